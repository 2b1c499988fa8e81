"""The operators' stack (issue 8): docker-compose, Prometheus' config and alert rules,
Grafana's dashboard, checked with the real tools (docker-compose, promtool, prometheus)
and against the real server of the `stack` fixture. There is no Docker engine here, so
the images are not built: what can be checked without one is.

A missing tool skips its tests with the reason (`.ci/run` installs the Debian packages
prometheus and docker-compose); nothing passes without having run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from mpp_server.config import Settings
from mpp_server.devtools.launcher import free_port
from tests.support.helpers import complete_payment, new_customer
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "mpp-server.json"
DATASOURCE = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
RUNBOOK = ROOT / "docs" / "runbook.md"

SECRETS = ("POSTGRES_PASSWORD", "MPP_OWNER_PASSWORD", "MPP_SERVER_PASSWORD",
           "WALLET_API_TOKENS", "GRAFANA_ADMIN_PASSWORD")
CONTRACT_VARIABLES = ("DATABASE_URL", "KASPI_BASE_URL", "KASPI_CALLER_NAME",
                      "KASPI_TIMEOUT_MS", "WALLET_API_TOKENS", "KASPI_ALLOWED_NETWORKS",
                      "WALLET_LISTEN", "KASPI_LISTEN", "SIMULATOR_LISTEN")
SEVERITIES = {"critical", "warning"}
# What the issue asks the alerts and the dashboard to watch.
ALERTED_METRICS = {
    "mpp_notify_outbox_depth", "mpp_pending_payment_oldest_age_seconds",
    "mpp_notify_outbox_oldest_age_seconds", "mpp_kaspi_calls_total",
    "mpp_kaspi_call_duration_seconds_bucket", "mpp_refunds_total", "mpp_money_alarms_total",
    "mpp_reconciliation_open_discrepancies", "mpp_webhook_oldest_undelivered_age_seconds",
    "mpp_webhook_deliveries_total", "mpp_disputes_overdue"}
CHARTED_METRICS = {
    "mpp_payments_total", "mpp_confirm_duration_seconds_bucket", "mpp_kaspi_calls_total",
    "mpp_kaspi_call_duration_seconds_bucket", "mpp_notify_retries_total",
    "mpp_notify_outbox_depth", "mpp_refunds_total", "mpp_refunded_tiyn_total",
    "mpp_money_alarms_total", "mpp_http_requests_total",
    "mpp_http_request_duration_seconds_bucket"}

TOOL_TIMEOUT_S = 60
PROMETHEUS_START_TIMEOUT_S = 30.0
SCRAPE_WAIT_S = 30.0


def tool(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                  else None)
    if path is None:
        reason = f"{name} not installed: apt-get install {package} (.ci/run installs it)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return path


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a tool in the checkout with a bare environment: docker-compose lets the
    caller's environment (DATABASE_URL of `make test`, say) override the env file."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S, check=False)


# ---- parsing: env files, metric names, runbook anchors --------------------------------

def env_file_values(text: str) -> dict[str, str]:
    """NAME=value lines (no interpolation); `#NAME=value` lines count as documented."""
    values = {}
    for line in text.splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


METRIC_NAME = re.compile(r"\bmpp_[a-z0-9_]+")
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def served_series_names(exposition: str) -> set[str]:
    """Every series name a query can select from a /metrics exposition: the samples
    present plus what `# TYPE` declares, since a labelled metric shows no sample until its
    first event. A histogram is queried through _bucket/_count/_sum, never its bare name."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SERIES)
            elif kind == "summary":
                names.update((name, name + "_count", name + "_sum"))
            elif kind == "counter":
                names.add(name if name.endswith("_total") else name + "_total")
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template queries."""
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    exprs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs


def as_promql(grafana_expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, for Prometheus' API."""
    for variable, value in (("$__rate_interval", "1m"), ("$__range", "5m"),
                            ("$instance", ".*")):
        grafana_expr = grafana_expr.replace(variable, value)
    return re.sub(r"^label_values\((.*), *\w+\)$", r"\1", grafana_expr)


def alert_exprs() -> list[str]:
    """The `expr:` of every rule in alerts.yml, one-line or `|` block (no YAML parser in
    the project's dependencies; a test checks the result against Prometheus' own)."""
    exprs = []
    lines = ALERTS.read_text().splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^( *)expr: *(.*)$", line)
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if value not in ("|", "|-", ">", ">-"):
            exprs.append(value)
            continue
        block = []
        for following in lines[index + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        exprs.append(" ".join(block).strip())
    return exprs


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC_NAME.findall(expr)}


def referenced_metric_names() -> dict[str, set[str]]:
    return {"alerts.yml": metric_names(alert_exprs()),
            "mpp-server.json": metric_names(dashboard_exprs())}


def scrape_job() -> tuple[str, str]:
    """The mpp-server job of deploy/prometheus/prometheus.yml: (job_name, metrics_path)."""
    text = PROMETHEUS_CONFIG.read_text()
    job = re.search(r"job_name:\s*\"?(mpp[\w-]*)", text)
    path = re.search(r"metrics_path:\s*\"?(/[\w/]*)", text)
    assert job and path, "prometheus.yml has no mpp job with a metrics_path"
    return job.group(1), path.group(1)


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


# ---- docker-compose --------------------------------------------------------------------

def env_file_with_secrets(tmp_path: Path, leave_out: str | None = None) -> Path:
    text = ENV_EXAMPLE.read_text()
    for secret in SECRETS:
        if secret != leave_out:
            text = re.sub(rf"^{secret}=$", f"{secret}=test-{secret.lower()}", text,
                          flags=re.MULTILINE)
    path = tmp_path / "env"
    path.write_text(text)
    return path


@pytest.mark.parametrize("profile", [[], ["--profile", "sim"]], ids=["default", "sim"])
def test_compose_file_is_accepted_with_the_example_env(tmp_path: Path,
                                                       profile: list[str]) -> None:
    compose = tool("docker-compose", "docker-compose")
    env_file = env_file_with_secrets(tmp_path)
    quiet = run(compose, "--env-file", str(env_file), *profile, "config", "-q")
    assert quiet.returncode == 0, quiet.stderr
    resolved = run(compose, "--env-file", str(env_file), *profile, "config")
    assert resolved.returncode == 0, resolved.stderr
    # .env's own password references are expanded: the server connects as mpp_server,
    # the migrations as mpp_owner (docs/operations.md, "Roles").
    assert ("DATABASE_URL: postgresql://mpp_server:test-mpp_server_password@postgres:5432/mpp"
            in resolved.stdout)
    assert ("DATABASE_URL: postgresql://mpp_owner:test-mpp_owner_password@postgres:5432/mpp"
            in resolved.stdout)
    assert "/docker-entrypoint-initdb.d/10-mpp-roles.sh" in resolved.stdout
    assert "condition: service_completed_successfully" in resolved.stdout
    assert "SIM_MPP_REFUND_URL: http://server:8081/refund" in resolved.stdout


def test_compose_ha_profile_renders_the_patroni_pair_behind_haproxy(tmp_path: Path) -> None:
    compose = tool("docker-compose", "docker-compose")
    env_file = env_file_with_secrets(tmp_path)
    resolved = run(compose, "--env-file", str(env_file), "--profile", "ha", "config")
    assert resolved.returncode == 0, resolved.stderr
    for service in ("etcd", "pg1", "pg2", "haproxy", "migrate-ha", "server-ha-1",
                    "server-ha-2"):
        assert f"\n  {service}:\n" in resolved.stdout, service
    # One server through HAProxy's primary port, one listing both nodes; the migrations
    # as the owner; both nodes archive into one pgBackRest repository.
    assert "mpp_server:test-mpp_server_password@haproxy:5000/mpp" in resolved.stdout
    assert ("mpp_server:test-mpp_server_password@pg1:5432,pg2:5432/mpp"
            "?target_session_attrs=read-write") in resolved.stdout
    assert "mpp_owner:test-mpp_owner_password@haproxy:5000/mpp" in resolved.stdout
    assert resolved.stdout.count("pgbackrest-repo:/var/lib/pgbackrest") >= 2


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, secret: str) -> None:
    compose = tool("docker-compose", "docker-compose")
    result = run(compose, "--env-file", str(env_file_with_secrets(tmp_path, secret)),
                 "config", "-q")
    assert result.returncode != 0
    assert secret in result.stderr and "see .env.example" in result.stderr, result.stderr


def test_env_example_documents_every_variable() -> None:
    documented = env_file_values(ENV_EXAMPLE.read_text())
    example = ENV_EXAMPLE.read_text()
    compose = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines()
                        if not line.lstrip().startswith("#"))
    used_by_compose = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose))
    assert used_by_compose - documented.keys() == set()
    assert [v for v in CONTRACT_VARIABLES if v not in example] == []
    # Each variable, or run of related variables, comes after a line of prose.
    prose = ""
    for line in example.splitlines():
        if re.match(r"^#?[A-Z][A-Z0-9_]*=", line):
            assert prose.startswith("# "), f"no comment above {line!r}"
        else:
            prose = line
    assert {name for name in SECRETS if documented[name]} == set(), "secrets ship empty"
    ignored = run("git", "check-ignore", "-q", ".env")
    assert ignored.returncode == 0, ".env must stay out of git"


def test_env_example_admits_the_simulator_to_refund_but_not_the_gateway() -> None:
    compose = COMPOSE_FILE.read_text()
    env = env_file_values(ENV_EXAMPLE.read_text())
    subnet = ipaddress.ip_network(env.get("MPP_DOCKER_SUBNET") or
                                  re.findall(r"MPP_DOCKER_SUBNET:-([\d./]+)", compose)[0])
    simulator = ipaddress.ip_address(env.get("SIMULATOR_IPV4") or
                                     re.findall(r"SIMULATOR_IPV4:-([\d.]+)", compose)[0])
    settings = Settings(kaspi_allowed_networks=env["KASPI_ALLOWED_NETWORKS"],
                        kaspi_caller_name=env["KASPI_CALLER_NAME"],
                        kaspi_timeout_ms=int(env["KASPI_TIMEOUT_MS"]))
    gateway = next(subnet.hosts())  # docker-proxy's source for host-published ports
    assert simulator in subnet
    assert any(simulator in network for network in settings.allowed_networks)
    assert not any(gateway in network for network in settings.allowed_networks)


# ---- promtool ----------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "path"), [
    ("config", PROMETHEUS_CONFIG), ("rules", ALERTS)], ids=["config", "rules"])
def test_promtool_accepts(command: str, path: Path) -> None:
    result = run(tool("promtool", "prometheus"), "check", command, str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    result = run(tool("promtool", "prometheus"), "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# ---- the files' own consistency ----------------------------------------------------------

def test_metric_name_parser_knows_declared_but_unobserved_series() -> None:
    exposition = "\n".join([
        "# TYPE mpp_refunds_total counter",                 # labelled, no event yet
        "# TYPE mpp_confirm_duration_seconds histogram",
        'mpp_confirm_duration_seconds_bucket{le="+Inf"} 0.0',
        "# TYPE mpp_payments counter",                      # OpenMetrics spelling
        "mpp_notify_outbox_depth 3.0",
    ])
    names = served_series_names(exposition)
    assert {"mpp_refunds_total", "mpp_confirm_duration_seconds_bucket",
            "mpp_confirm_duration_seconds_count", "mpp_payments_total",
            "mpp_notify_outbox_depth"} <= names
    assert "mpp_confirm_duration_seconds" not in names  # a histogram's bare name
    assert METRIC_NAME.findall('rate(mpp_a_total{x="mpp-b"}[5m]) / mpp_c_bucket') == [
        "mpp_a_total", "mpp_c_bucket"]


def test_alerts_and_dashboard_watch_what_the_issue_asks() -> None:
    names = referenced_metric_names()
    assert ALERTED_METRICS - names["alerts.yml"] == set()
    assert CHARTED_METRICS - names["mpp-server.json"] == set()
    assert "up{job=" in ALERTS.read_text()


def test_job_label_in_alerts_and_dashboard_is_the_scrape_job() -> None:
    job, _ = scrape_job()
    texts = ALERTS.read_text() + "\n".join(dashboard_exprs())
    assert set(re.findall(r'job="([^"]*)"', texts)) == {job}


def test_dashboard_queries_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    uid = re.search(r"uid:\s*(\S+)", DATASOURCE.read_text())
    assert uid is not None
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == uid.group(1)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


# ---- a real Prometheus -------------------------------------------------------------------

@dataclass
class Prometheus:
    url: str
    http: aiohttp.ClientSession

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(self.url + path, params=params) as resp:
            body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, query: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self.api("/api/v1/query", query=query))["result"]
        return result

    async def value(self, query: str) -> float:
        """The instant value of a one-series query, 0 when it has no series."""
        result = await self.query(query)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0

    async def wait_until(self, query: str, accept: Callable[[list[dict[str, Any]]], bool]
                         ) -> list[dict[str, Any]]:
        """Poll an instant query until its result is accepted (bounded)."""
        deadline = asyncio.get_running_loop().time() + SCRAPE_WAIT_S
        while not accept(result := await self.query(query)):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{query} stayed at {result}")
            await asyncio.sleep(0.5)
        return result


def write_prometheus_config(folder: Path, target: str | None) -> Path:
    """The project's job and rules, a 1 s scrape; JSON is YAML to Prometheus."""
    job, metrics_path = scrape_job()
    scrape = ([{"job_name": job, "metrics_path": metrics_path,
                "static_configs": [{"targets": [target]}]}] if target else [])
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                         "evaluation_interval": "1s"},
              "rule_files": [str(ALERTS)], "scrape_configs": scrape}
    path = folder / "prometheus.json"
    path.write_text(json.dumps(config))
    (folder / "data").mkdir()
    return path


@asynccontextmanager
async def running_prometheus(folder: Path, target: str | None) -> AsyncIterator[Prometheus]:
    binary = tool("prometheus", "prometheus")
    config = write_prometheus_config(folder, target)
    listen = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={listen}", "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as http:
            prometheus = Prometheus(f"http://{listen}", http)
            deadline = asyncio.get_running_loop().time() + PROMETHEUS_START_TIMEOUT_S
            while not await _ready(prometheus):
                if process.returncode is not None or \
                        asyncio.get_running_loop().time() > deadline:
                    assert process.stderr is not None
                    log = (await process.stderr.read()).decode()
                    raise AssertionError(f"prometheus did not start: {log}")
                await asyncio.sleep(0.2)
            yield prometheus
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _ready(prometheus: Prometheus) -> bool:
    try:
        async with prometheus.http.get(prometheus.url + "/-/ready") as resp:
            return resp.status == 200
    except aiohttp.ClientConnectionError:
        return False


@pytest.fixture(scope="module")
async def rules_only_prometheus(tmp_path_factory: pytest.TempPathFactory
                                ) -> AsyncIterator[Prometheus]:
    """Prometheus with the project's rules and nothing to scrape."""
    async with running_prometheus(tmp_path_factory.mktemp("prom-rules"), None) as prom:
        yield prom


@pytest.fixture(scope="module")
async def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory
                     ) -> AsyncIterator[Prometheus]:
    """Prometheus scraping the test server's wallet listener every second."""
    target = urlsplit(stack.wallet_url).netloc
    async with running_prometheus(tmp_path_factory.mktemp("prom-stack"), target) as prom:
        yield prom


async def alerting_rules(prometheus: Prometheus) -> list[dict[str, Any]]:
    groups = (await prometheus.api("/api/v1/rules"))["groups"]
    return [r for g in groups for r in g["rules"] if r["type"] == "alerting"]


async def evaluated_again(prometheus: Prometheus) -> list[dict[str, Any]]:
    """The alerting rules once each has been evaluated again since this call (bounded)."""
    before = {r["name"]: r["lastEvaluation"] for r in await alerting_rules(prometheus)}
    deadline = asyncio.get_running_loop().time() + SCRAPE_WAIT_S
    while True:
        rules = await alerting_rules(prometheus)
        stale = [r["name"] for r in rules if r["lastEvaluation"] == before.get(r["name"])]
        if not stale:
            return rules
        assert asyncio.get_running_loop().time() < deadline, f"never evaluated again: {stale}"
        await asyncio.sleep(0.2)


async def test_every_alert_has_severity_summary_and_a_runbook_section(
        rules_only_prometheus: Prometheus) -> None:
    rules = await alerting_rules(rules_only_prometheus)
    assert len(rules) == ALERTS.read_text().count("- alert:") == len(alert_exprs())
    # The text extraction used for metric names sees what Prometheus parsed.
    assert metric_names(alert_exprs()) == metric_names([r["query"] for r in rules])
    anchors = github_anchors(RUNBOOK.read_text())
    for rule in rules:
        assert rule["labels"].get("severity") in SEVERITIES, rule["name"]
        assert rule["annotations"].get("summary"), rule["name"]
        runbook = rule["annotations"].get("runbook", "")
        section = re.search(r"docs/runbook\.md#([\w-]+)", runbook)
        assert section and section.group(1) in anchors, f"{rule['name']}: {runbook!r}"
        assert len(runbook) > len(section.group(0)) + 20, f"{rule['name']}: say what to do"


async def test_every_dashboard_query_is_valid_promql(rules_only_prometheus: Prometheus
                                                     ) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= len(CHARTED_METRICS)
    for expr in exprs:
        async with rules_only_prometheus.http.get(
                rules_only_prometheus.url + "/api/v1/query",
                params={"query": as_promql(expr)}) as resp:
            body = await resp.json()
        assert body["status"] == "success", (expr, body)


# ---- against the running server ----------------------------------------------------------

async def test_every_metric_in_alerts_and_dashboard_is_served(stack: Stack) -> None:
    async with stack.http.get(stack.wallet_url + "/metrics") as resp:
        assert resp.status == 200  # no token: Prometheus scrapes without one
        served = served_series_names(await resp.text())
    for source, names in referenced_metric_names().items():
        assert names - served == set(), f"{source} queries metrics /metrics does not serve"


async def test_container_healthcheck_reads_wallet_listen(stack: Stack) -> None:
    async def healthcheck(env: dict[str, str], *args: str) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(HEALTHCHECK), *args, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        return await asyncio.wait_for(process.wait(), 15)

    listen = urlsplit(stack.wallet_url).netloc
    closed = f"127.0.0.1:{free_port()}"
    assert await healthcheck({"WALLET_LISTEN": listen}) == 0
    assert await healthcheck({"WALLET_LISTEN": closed}) == 1
    assert await healthcheck({"SIMULATOR_LISTEN": urlsplit(stack.sim_url).netloc},
                             "--tcp", "SIMULATOR_LISTEN") == 0
    assert await healthcheck({"SIMULATOR_LISTEN": closed}, "--tcp", "SIMULATOR_LISTEN") == 1


async def test_prometheus_scrapes_the_server_and_sees_a_payment(
        stack: Stack, prometheus: Prometheus) -> None:
    job, _ = scrape_job()
    await prometheus.wait_until(f'up{{job="{job}"}} == 1', bool)
    targets = (await prometheus.api("/api/v1/targets"))["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [(job, "up")]
    assert targets[0]["scrapeUrl"] == stack.wallet_url + "/metrics"

    completed = f'sum(mpp_payments_total{{job="{job}", outcome="COMPLETED"}})'
    before = await prometheus.value(completed)
    paid = await complete_payment(stack, new_customer())
    assert paid["status"] == "COMPLETED"
    await prometheus.wait_until(f"{completed} >= {before + 1}", bool)
    after = await prometheus.value(completed)
    async with stack.http.get(stack.wallet_url + "/metrics") as resp:
        served = re.search(r'^mpp_payments_total\{outcome="COMPLETED"\} (\S+)$',
                           await resp.text(), re.MULTILINE)
    assert served and float(served.group(1)) >= after

    # The dashboard's payments panel shows the outcome (rate() needs two samples).
    panel = next(e for e in dashboard_exprs() if "mpp_payments_total" in e)
    await prometheus.wait_until(as_promql(panel), lambda series: "COMPLETED" in {
        s["metric"].get("outcome") for s in series})

    # Every rule evaluates against the real series without an error: each rule's next
    # evaluation (after the data above was there) is the one judged.
    for rule in await evaluated_again(prometheus):
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
