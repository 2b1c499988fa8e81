"""Every repository path a doc or a comment names exists (issue 21: files move, and a
comment that sends the reader to a file that is gone is worse than none)."""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_EXT = r"(?:py|sql|md|ya?ml|json|conf|sh|toml|html|j2|txt|ini|cfg|service|rules)"
# A path with a folder (mpp_server/domain/payments.py, domain/payments.py,
# functions/payments.sql), or the bare name of one of our source files.
_PATH = re.compile(rf"(?<![\w./@:-])((?:[\w.-]+/)+[\w-]+(?:\.[\w-]+)*\.{_EXT}"
                   rf"|[\w-]+\.(?:py|sql|md))(?![\w/-]|\.\w)")
# Where a relative path may start: the repository and its source roots.
_ROOTS = ("", "mpp_server/", "sql/", "tests/", "docs/", "deploy/")
# Names that are not ours: the shared folder beside the repository, other projects'
# files, examples of a user's own files, and names built at run time.
_FOREIGN = re.compile(r"^(?:shared/|spec/|seeds/|\.\./|/|\.data/|bench/results/|"
                      r".*NNN_|mpp_models\.py$|.*-bitrix\.txt$|kaspi-mpp-api\.md$|wallet-api\.md$|"
                      r"STYLE\.md$|DEVELOPERS\.md$|README\.md$)")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines()]


def _prose(path: Path) -> str:
    """The text a reader reads as prose: a Python file's comments and docstrings, a
    document's or a config's whole text. Released migrations are history, not read."""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return text
    lines = text.splitlines()
    kept = [""] * len(lines)
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            kept[token.start[0] - 1] += " " + token.string
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                      | ast.AsyncFunctionDef) and ast.get_docstring(node) is not None:
            first = node.body[0]
            for number in range(first.lineno, (first.end_lineno or first.lineno) + 1):
                kept[number - 1] += " " + lines[number - 1]
    return "\n".join(kept)


def _scanned(tracked: list[Path]) -> list[Path]:
    return [p for p in tracked
            if (p.suffix in (".py", ".sql", ".md", ".yml", ".yaml", ".sh")
                or p.name in ("Makefile", "run", "Dockerfile"))
            and "migrations" not in p.parts]


def _exists(name: str, files: set[str], basenames: set[str]) -> bool:
    name = name.removeprefix("./")  # a compose bind mount's source
    if "/" not in name:
        return name in basenames
    return any(f"{root}{name}" in files or (ROOT / f"{root}{name}").is_dir()
               for root in _ROOTS)


def _named(text: str) -> set[str]:
    return {m.group(1).rstrip(".") for m in _PATH.finditer(text)}


def test_every_path_a_doc_or_comment_names_exists() -> None:
    tracked = _tracked()
    files = {str(p.relative_to(ROOT)) for p in tracked}
    basenames = {p.name for p in tracked}
    missing: list[str] = []
    for path in _scanned(tracked):
        for number, line in enumerate(_prose(path).splitlines(), 1):
            for name in _named(line):
                if not _FOREIGN.match(name) and not _exists(name, files, basenames):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert missing == []


def test_the_finder_sees_the_forms_we_write() -> None:
    assert _named("see domain/outbox.py and sql/functions/states.sql.") == {
        "domain/outbox.py", "sql/functions/states.sql"}
    assert _named("the outbox (notifier.py) retries") == {"notifier.py"}
    assert _named("https://epayment.kz/docs/x.html and a.b") == set()
