"""Every Prometheus metric the server exposes, in one place.

The alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard query these
names; a test checks that each name they use is present in /metrics.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
_M = TypeVar("_M", Counter, Gauge, Histogram)


class Children(Generic[_M]):
    """A labelled metric's children, kept by their label values: `labels()` checks and
    joins its values and takes the metric's lock on every call, 4 % of a server's CPU on
    the payment path (docs/performance.md); the request path asks a dict instead. Only
    for label values from a bounded set (routes, statuses, result codes): the metric
    keeps every child it made anyway."""

    def __init__(self, metric: _M) -> None:
        self._metric: _M = metric
        self._children: dict[tuple[str, ...], _M] = {}

    def __call__(self, *values: str) -> _M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0)

HTTP_REQUESTS = Counter(
    "mpp_http_requests_total", "HTTP requests served, by listener, route and status",
    ["listener", "method", "route", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram(
    "mpp_http_request_duration_seconds", "Time to answer an HTTP request",
    ["listener", "route"], buckets=_LATENCY_BUCKETS_S, registry=REGISTRY)
HTTP_REQUESTS_BY = Children(HTTP_REQUESTS)
HTTP_LATENCY_BY = Children(HTTP_LATENCY)

UNDECLARED_ERRORS = Counter(
    "mpp_http_undeclared_errors_total",
    "Wallet-API errors answered by a route whose declaration (and so the OpenAPI "
    "description) does not list them: a bug to fix in http/routes.py",
    ["operation", "code"], registry=REGISTRY)

KASPI_CALLS = Counter(
    "mpp_kaspi_calls_total",
    "Calls to Kaspi by method and outcome: Kaspi's resultCode, or TIMEOUT, "
    "CONNECTION_ERROR, HTTP_<status>, BAD_RESPONSE when Kaspi gave no answer",
    ["method", "result_code"], registry=REGISTRY)
KASPI_LATENCY = Histogram(
    "mpp_kaspi_call_duration_seconds", "Latency of calls to Kaspi",
    ["method"], buckets=_LATENCY_BUCKETS_S, registry=REGISTRY)
KASPI_CALLS_BY = Children(KASPI_CALLS)
KASPI_LATENCY_BY = Children(KASPI_LATENCY)

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
    "Payments reaching an outcome: COMPLETED, DECLINED, CANCELLED, EXPIRED, FAILED (Kaspi "
    "refused the checkout finally), INSUFFICIENT_FUNDS, LIMIT_EXCEEDED", ["outcome"],
    registry=REGISTRY)
PAYMENTS_BY = Children(PAYMENTS)
CONFIRM_LATENCY = Histogram(
    "mpp_confirm_duration_seconds", "Time to answer POST /v1/payments/{id}/confirm",
    buckets=_LATENCY_BUCKETS_S, registry=REGISTRY)

REFUNDS = Counter(
    "mpp_refunds_total", "Inbound /refund requests by the resultCode we answered",
    ["result_code"], registry=REGISTRY)
REFUNDS_BY = Children(REFUNDS)
REFUNDED_TIYN = Counter(
    "mpp_refunded_tiyn_total", "Tiyn credited back to customers by refunds",
    registry=REGISTRY)

LIMIT_REFUSALS = Counter(
    "mpp_limit_refusals_total",
    "Confirms and deposits refused with LIMIT_EXCEEDED, by limit (payment, daily, monthly, "
    "balance) and identification level", ["limit", "level"], registry=REGISTRY)
BALANCE_OVER_CAP = Counter(
    "mpp_balance_over_cap_total",
    "Refunds credited (never refused for a limit) that left the customer's balance over "
    "the balance cap of their identification level", registry=REGISTRY)

MONEY_ALARMS = Counter(
    "mpp_money_alarms_total",
    "Events that need a person: Kaspi contradicting our books, a refused debit that "
    "the database constraint caught, ...", ["kind"], registry=REGISTRY)

KASPI_DEFECTS = Counter(
    "mpp_kaspi_defects_total",
    "A field of Kaspi's message that breaks the regulation: taken cut, dropped, sanitised "
    "or as sent when it decides nothing, or the answer refused (KASPI_DEFECTIVE_ANSWER) "
    "when a later step needs it: someone should tell Kaspi",
    ["message", "field", "defect"], registry=REGISTRY)

RECONCILIATION_OPEN = Gauge(
    "mpp_reconciliation_open_discrepancies",
    "Open (neither resolved nor acknowledged) discrepancies of the latest reconciliation "
    "run of each registry: registry daily|monthly, period YYYY-MM-DD|YYYY-MM",
    ["registry", "period"], registry=REGISTRY)

RECONCILIATION_ACKNOWLEDGED = Gauge(
    "mpp_reconciliation_acknowledged_difference_tiyn",
    "Latest reconciliation run of each registry whose discrepancies are all resolved but "
    "not by evidence alone (status acknowledged_with_differences): Kaspi's payments − "
    "refunds less ours, in tiyn (0 when only other findings were acknowledged); no series "
    "for a matched or open run", ["registry", "period"], registry=REGISTRY)

DB_QUERIES = Counter(
    "mpp_db_queries_total",
    "Statements sent to PostgreSQL (BEGIN/COMMIT included); counted only when "
    "DB_QUERY_METRICS=true, as the benchmark does", registry=REGISTRY)

ACQUIRER_CALLS = Counter(
    "mpp_acquirer_calls_total",
    "Calls to card acquirers (top-ups) by provider, operation and outcome: HTTP_<status>, "
    "TIMEOUT, CONNECTION_ERROR, BAD_RESPONSE", ["provider", "operation", "outcome"],
    registry=REGISTRY)
ACQUIRER_LATENCY = Histogram(
    "mpp_acquirer_call_duration_seconds", "Latency of calls to card acquirers",
    ["provider", "operation"], buckets=_LATENCY_BUCKETS_S, registry=REGISTRY)
TOPUPS = Counter(
    "mpp_topups_total",
    "Top-ups reaching an outcome by acquirer: CREATED (order placed), CREDITED, FAILED, "
    "EXPIRED, MISMATCHED (paid another amount: a person looks)", ["provider", "outcome"],
    registry=REGISTRY)
TOPUP_STATUS_CHECKS = Counter(
    "mpp_topup_status_checks_total",
    "Acquirer status checks by provider, what triggered them (callback, poll) and the "
    "verdict (PAID, DECLINED, EXPIRED, WAITING, NO_ANSWER)", ["provider", "trigger", "verdict"],
    registry=REGISTRY)
TOPUP_CALLBACK_DISAGREEMENTS = Counter(
    "mpp_topup_callback_disagreements_total",
    "Callbacks claiming a payment the acquirer's status API did not confirm (forged, "
    "early or wrong)", ["provider"], registry=REGISTRY)
TOPUP_OVERDUE = Gauge(
    "mpp_topup_created_overdue", "Top-ups still CREATED past their acquirer session's end "
    "(the status API has not answered since)", ["provider"], registry=REGISTRY)
TOPUP_LATE_CREDITS = Counter(
    "mpp_topup_late_credits_total",
    "Top-ups credited after we called them FAILED or EXPIRED: the acquirer took the money "
    "late (a page kept open, a card retried)", ["provider"], registry=REGISTRY)
TOPUP_CALLBACKS_DROPPED = Counter(
    "mpp_topup_callbacks_dropped_total",
    "Callbacks not checked at once because too many were waiting (the poller checks their "
    "top-ups); a burst of them is a flood, forged or real", ["provider"], registry=REGISTRY)
TOPUP_REFUNDS = Counter(
    "mpp_topup_refunds_total",
    "Money back to the card by provider and outcome: STAGED (wallet debited), COMPLETED, "
    "REFUSED (money returned to the wallet), UNKNOWN (an attempt unanswered), RESEND, "
    "WAITING, WAIT_TURN", ["provider", "outcome"], registry=REGISTRY)
TOPUP_REFUNDS_UNKNOWN = Gauge(
    "mpp_topup_refunds_unknown",
    "Refunds to the card whose outcome is unknown (UNKNOWN): the wallet is debited, the "
    "acquirer's answer was lost and its books do not show yet what happened; never given "
    "back to the wallet without them (MppTopupRefundUnknown)", ["provider"], registry=REGISTRY)
DB_UNAVAILABLE = Counter(
    "mpp_db_unavailable_total",
    "Times the database was unavailable (refused, stalled past its bound, failing over, "
    "not the primary), by who noticed: wallet, kaspi (/refund), notify_worker, "
    "top-up status check, top-up refund, housekeeping, journal, retention", ["where"],
    registry=REGISTRY)
JOURNAL_ROWS = Counter(
    "mpp_exchange_journal_rows_total",
    "Exchange journal rows by outcome: written; dropped because the queue was full "
    "(queue_full), because the database refused the batch (write_failed), or still queued "
    "at a stop the database did not allow to finish (lost_at_stop)", ["outcome"],
    registry=REGISTRY)
JOURNAL_QUEUE = Gauge(
    "mpp_exchange_journal_queued_rows", "Exchange journal rows waiting to be written",
    registry=REGISTRY)
JOURNAL_LAG = Gauge(
    "mpp_exchange_journal_lag_seconds",
    "Age of the oldest exchange journal row still waiting to be written (0: none waits)",
    registry=REGISTRY)
RETENTION_RUNS = Counter(
    "mpp_retention_runs_total",
    "Retention rounds (journal partitions, inbound log, events) by outcome: done, "
    "skipped (another server's round held the lock), failed", ["outcome"],
    registry=REGISTRY)
RETENTION_REMOVED = Counter(
    "mpp_retention_removed_total",
    "What retention removed: exchange_journal_partitions (whole months), inbound_requests, "
    "events and webhook_deliveries (rows)", ["what"], registry=REGISTRY)
RETENTION_PARTITIONS_CREATED = Counter(
    "mpp_retention_partitions_created_total",
    "Exchange journal partitions created ahead by retention", registry=REGISTRY)

WEBHOOK_DELIVERIES = Counter(
    "mpp_webhook_deliveries_total",
    "Webhook deliveries to WEBHOOK_URL ending: delivered (a 2xx), given_up (not delivered "
    "within WEBHOOK_MAX_AGE_S: replay with `python -m mpp_server webhooks replay ID`)",
    ["outcome"], registry=REGISTRY)
WEBHOOK_ATTEMPTS = Counter(
    "mpp_webhook_attempts_total",
    "Webhook POSTs by result: HTTP_<status>, TIMEOUT (WEBHOOK_TIMEOUT_MS), "
    "CONNECTION_ERROR, BAD_RESPONSE, INTERNAL_ERROR, EVENT_GONE", ["result"],
    registry=REGISTRY)
WEBHOOK_OUTBOX_DEPTH = Gauge(
    "mpp_webhook_outbox_depth", "Webhook deliveries not made yet (PENDING)",
    registry=REGISTRY)
WEBHOOK_OLDEST_AGE = Gauge(
    "mpp_webhook_oldest_undelivered_age_seconds",
    "Age of the oldest webhook delivery not made yet (from its event, or its replay); "
    "exported by servers with WEBHOOK_URL set", registry=REGISTRY)
WEBHOOK_LAG = Histogram(
    "mpp_webhook_delivery_lag_seconds",
    "From an event (or its replay) to the receiver's 2xx",
    buckets=(*_LATENCY_BUCKETS_S, 30.0, 60.0, 300.0, 1800.0, 3600.0), registry=REGISTRY)

DISPUTES_OPEN = Gauge(
    "mpp_disputes_open", "Customers' disputes OPEN (not resolved yet)", registry=REGISTRY)
DISPUTES_OVERDUE = Gauge(
    "mpp_disputes_overdue",
    "Disputes still OPEN past their dueAt (DISPUTE_RESPONSE_HOURS after they opened)",
    registry=REGISTRY)

# Series that alerts watch with increase(): exported at 0 from the start, so the first
# event is an increase and not the series' first appearance.
for _outcome in ("COMPLETED", "DECLINED", "CANCELLED", "EXPIRED", "FAILED",
                 "INSUFFICIENT_FUNDS", "LIMIT_EXCEEDED"):
    PAYMENTS.labels(_outcome)
for _kind in ("notify_declined_completed_payment", "unknown_notify_code",
              "refund_for_declined_payment", "registry_confirms_declined_payment"):
    MONEY_ALARMS.labels(_kind)
for _outcome in ("delivered", "given_up"):
    WEBHOOK_DELIVERIES.labels(_outcome)
for _where in ("wallet", "kaspi", "notify_worker", "housekeeping"):
    DB_UNAVAILABLE.labels(_where)
for _code in ("SUCCESS", "PARAM_ILLEGAL", "PROCESS_FAIL"):
    REFUNDS.labels(_code)
for _provider in ("halyk-epay", "kapital", "kaspi-ecom"):
    TOPUP_OVERDUE.labels(_provider)
    TOPUP_CALLBACK_DISAGREEMENTS.labels(_provider)
    TOPUP_LATE_CREDITS.labels(_provider)
    TOPUP_CALLBACKS_DROPPED.labels(_provider)
    TOPUP_REFUNDS_UNKNOWN.labels(_provider)
MONEY_ALARMS.labels("topup_amount_mismatch")
MONEY_ALARMS.labels("topup_currency_mismatch")
for _outcome in ("written", "queue_full", "write_failed", "lost_at_stop"):
    JOURNAL_ROWS.labels(_outcome)
for _outcome in ("done", "skipped", "failed"):
    RETENTION_RUNS.labels(_outcome)
for _field, _defect in (("resultCode", "unstorable"), ("resultMessage", "not_text"),
                        ("resultMessage", "unstorable"), ("resultMessage", "too_long"),
                        ("linkReceipt", "not_text"), ("linkReceipt", "unstorable"),
                        ("linkReceipt", "too_long")):
    KASPI_DEFECTS.labels("notifyPayment", _field, _defect)
KASPI_DEFECTS.labels("refund", "linkReceipt", "missing")
for _message, _field, _defect in (
        ("scan", "canConfirmUntil", "missing"), ("scan", "paymentAmount", "missing"),
        ("scan", "merchantMCC", "missing"), ("scan", "merchantMCC", "too_long"),
        ("scan", "authorType", "missing"), ("scan", "authorType", "too_long"),
        ("checkout", "canConfirmUntil", "missing"), ("checkout", "paymentAmount", "missing"),
        ("checkout", "paymentAmount", "not_whole")):
    KASPI_DEFECTS.labels(_message, _field, _defect)
