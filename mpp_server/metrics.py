"""Every Prometheus metric the server exposes, in one place.

The alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard query these
names; a test checks that each name they use is present in /metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0)

HTTP_REQUESTS = Counter(
    "mpp_http_requests_total", "HTTP requests served, by listener, route and status",
    ["listener", "method", "route", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram(
    "mpp_http_request_duration_seconds", "Time to answer an HTTP request",
    ["listener", "route"], buckets=_LATENCY_BUCKETS_S, registry=REGISTRY)

KASPI_CALLS = Counter(
    "mpp_kaspi_calls_total",
    "Calls to Kaspi by method and outcome: Kaspi's resultCode, or TIMEOUT, "
    "CONNECTION_ERROR, HTTP_<status>, BAD_RESPONSE when Kaspi gave no answer",
    ["method", "result_code"], registry=REGISTRY)
KASPI_LATENCY = Histogram(
    "mpp_kaspi_call_duration_seconds", "Latency of calls to Kaspi",
    ["method"], buckets=_LATENCY_BUCKETS_S, registry=REGISTRY)

NOTIFY_RETRIES = Counter(
    "mpp_notify_retries_total",
    "notifyPayment attempts that got no final answer and will be retried",
    ["reason"], registry=REGISTRY)
OUTBOX_DEPTH = Gauge(
    "mpp_notify_outbox_depth", "notifyPayment calls waiting for Kaspi's answer",
    registry=REGISTRY)
OUTBOX_OLDEST_AGE = Gauge(
    "mpp_notify_outbox_oldest_age_seconds",
    "Age of the oldest notifyPayment still waiting for Kaspi's answer", registry=REGISTRY)
PENDING_OLDEST_AGE = Gauge(
    "mpp_pending_payment_oldest_age_seconds",
    "Age of the oldest payment in status PENDING (customer debited, Kaspi not answered)",
    registry=REGISTRY)

PAYMENTS = Counter(
    "mpp_payments_total",
    "Payments reaching an outcome: COMPLETED, DECLINED, CANCELLED, EXPIRED, "
    "INSUFFICIENT_FUNDS", ["outcome"], registry=REGISTRY)
CONFIRM_LATENCY = Histogram(
    "mpp_confirm_duration_seconds", "Time to answer POST /v1/payments/{id}/confirm",
    buckets=_LATENCY_BUCKETS_S, registry=REGISTRY)

REFUNDS = Counter(
    "mpp_refunds_total", "Inbound /refund requests by the resultCode we answered",
    ["result_code"], registry=REGISTRY)
REFUNDED_TIYN = Counter(
    "mpp_refunded_tiyn_total", "Tiyn credited back to customers by refunds",
    registry=REGISTRY)

MONEY_ALARMS = Counter(
    "mpp_money_alarms_total",
    "Events that need a person: Kaspi contradicting our books, a refused debit that "
    "the database constraint caught, ...", ["kind"], registry=REGISTRY)

RECONCILIATION_OPEN = Gauge(
    "mpp_reconciliation_open_discrepancies",
    "Discrepancies found by the latest reconciliation run of each registry",
    registry=REGISTRY)

DB_QUERIES = Counter(
    "mpp_db_queries_total",
    "Statements sent to PostgreSQL (BEGIN/COMMIT included); counted only when "
    "DB_QUERY_METRICS=true, as the benchmark does", registry=REGISTRY)

DB_UNAVAILABLE = Counter(
    "mpp_db_unavailable_total",
    "Times the database was unavailable (refused, stalled past its bound, failing over, "
    "not the primary), by who noticed: wallet, kaspi (/refund), notify_worker, "
    "housekeeping", ["where"], registry=REGISTRY)

# Series that alerts watch with increase(): exported at 0 from the start, so the first
# event is an increase and not the series' first appearance.
for _outcome in ("COMPLETED", "DECLINED", "CANCELLED", "EXPIRED", "INSUFFICIENT_FUNDS"):
    PAYMENTS.labels(_outcome)
for _kind in ("notify_declined_completed_payment", "unknown_notify_code",
              "refund_for_declined_payment", "registry_confirms_declined_payment"):
    MONEY_ALARMS.labels(_kind)
for _where in ("wallet", "kaspi", "notify_worker", "housekeeping"):
    DB_UNAVAILABLE.labels(_where)
for _code in ("SUCCESS", "PARAM_ILLEGAL"):
    REFUNDS.labels(_code)
