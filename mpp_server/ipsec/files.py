"""Write the rendered config and its secrets file: both or neither, never a half-written one.

Each file is written to a temporary name in the target folder (so the rename cannot cross
file systems), flushed to disk, then renamed into place. The secrets file is renamed first:
a config that charon can see always finds the secrets file it includes. The secrets file is
created 0600 from the start, so the PSK is never readable by others, not even for a moment.
Two renames are not one atomic step: a crash between them leaves the new secrets beside the
old config (which still loads: the secrets file keeps its name). Rendering again repairs it.
"""

from __future__ import annotations

import os
from pathlib import Path

CONF_MODE = 0o644
SECRETS_MODE = 0o600


def secrets_path_for(conf_path: Path) -> Path:
    """`/etc/swanctl/conf.d/kaspi.conf` -> `/etc/swanctl/conf.d/kaspi.secrets`.

    Not `*.conf`: the stock /etc/swanctl/swanctl.conf includes `conf.d/*.conf`, which would
    load the secrets twice.
    """
    return conf_path.with_name(conf_path.stem + ".secrets")


def _write_temp(path: Path, text: str, mode: int) -> Path:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; the config is meant to be 0644
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_pair(conf_path: Path, conf_text: str, secrets_path: Path, secrets_text: str) -> None:
    temps: list[Path] = []
    try:
        secrets_temp = _write_temp(secrets_path, secrets_text, SECRETS_MODE)
        temps.append(secrets_temp)
        conf_temp = _write_temp(conf_path, conf_text, CONF_MODE)
        temps.append(conf_temp)
        os.replace(secrets_temp, secrets_path)
        os.replace(conf_temp, conf_path)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    _fsync_dir(conf_path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
