"""The OpenAPI 3.1 description of both listeners, generated from the pydantic models
that validate the requests and shape the answers (http/models.py, http/py).

`ROUTES` is the one table of what each listener serves: method, path, models, answers
per status with the error codes, examples. Schemas are never written here: they come
from the models (`models_json_schema`, "validation" for requests, "serialization" for
answers), so the description cannot drift from what the server checks and sends.

Each listener serves its own part at `GET /openapi.json` (relative server URL: the
host that served it). `python -m mpp_server openapi` (`make openapi`) prints one
document with both listeners, the default addresses as servers, for docs/openapi.json
(docs/openapi.md says why one document).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from mpp_server import __version__, cursors, errors
from mpp_server.config import Settings
from mpp_server.http import reconciliations, unreadable, wallet
from mpp_server.http.models import (
    CUSTOMER_ID_PATTERN,
    ID_PATTERN,
    AccountOut,
    CancelIn,
    CheckoutIn,
    CheckoutOut,
    ConfirmIn,
    DepositIn,
    ErrorBody,
    ErrorOut,
    EventOut,
    EventsOut,
    HealthOut,
    IdentificationIn,
    IdentificationOut,
    MerchantOut,
    OptionOut,
    PaymentOut,
    RefundOut,
    RefundRef,
    ScanIn,
    ScanOut,
    ScanPaymentOut,
    ServiceOut,
    ServiceParameterOut,
    StatementEntryOut,
    StatementOut,
    TopupIn,
    TopupOut,
    TopupRefundIn,
    TopupRefundOut,
)
from mpp_server.http.refund_listener import RefundIn, RefundResultOut
from mpp_server.kaspi_client.codes import ResultCode
from mpp_server.kaspi_client.models import LOCALES, ResultOut
from mpp_server.reconcile.report import ReconciliationOut, ReconciliationsOut

Listener = Literal["wallet", "kaspi"]
Which = Literal["wallet", "kaspi", "all"]
JSON = "application/json"
REF = "#/components/schemas/{model}"

# ---- examples: model instances, so every example is a valid answer by construction ----

CUSTOMER = "900912345678"
PAYMENT_ID = "abc1234567890"
UNTIL = datetime(2024, 2, 19, 10, 57, 41, tzinfo=UTC)
MERCHANT = MerchantOut(merchantId="123456789", merchantName="Coffee Bar", merchantMCC="5812")
RECEIPT = "https://receipt-test.kaspi.kz/web?extTranId=QR2509155449&sale_date=2024-12-05+12:05:10.285"


def _payment(**changes: Any) -> PaymentOut:
    base: dict[str, Any] = dict(
        paymentId=PAYMENT_ID, mppPaymentId="1042", qrCodeType="Dynamic", status="COMPLETED",
        amount=150000, refundedAmount=0, linkReceipt=RECEIPT, merchant=MERCHANT,
        canConfirmUntil=UNTIL, kaspiAcknowledged=True, createdAt=UNTIL)
    return PaymentOut(**{**base, **changes})


SCAN_EXAMPLES: dict[str, BaseModel] = {
    "Dynamic": ScanOut(qrCodeType="Dynamic", merchant=MERCHANT, payment=ScanPaymentOut(
        paymentId=PAYMENT_ID, amount=150000, canConfirmUntil=UNTIL, status="SCANNED")),
    "Static": ScanOut(qrCodeType="Static", merchant=MERCHANT, payment=ScanPaymentOut(
        paymentId="st-0192837465", canConfirmUntil=UNTIL, status="SCANNED")),
    "Custom": ScanOut(
        qrCodeType="Custom", merchant=MERCHANT,
        payment=ScanPaymentOut(paymentId="379eb787-1a36-4096-ac39-4f3006e26a19",
                               status="SCANNED"),
        service=ServiceOut(serviceId=2862, serviceName="Парковка", parameters=[
            ServiceParameterOut(id=3932, name="Госномер", value=""),
            ServiceParameterOut(id=3933, name="Зона", options=[
                OptionOut(key="A", label="Зона A"), OptionOut(key="B", label="Зона B")])])),
    "Refund": ScanOut(qrCodeType="Refund", refund=RefundRef(refundId="QR150895463")),
}
PAYMENT_EXAMPLES: dict[str, BaseModel] = {
    "COMPLETED": _payment(),
    "PENDING": _payment(status="PENDING", linkReceipt=None, kaspiAcknowledged=False),
    "refunded": _payment(refundedAmount=50000, refunds=[
        RefundOut(refundId="Ref1234567", amount=50000, createdAt=UNTIL)]),
}

TOPUP_EXAMPLES: dict[str, BaseModel] = {
    "CREATED": TopupOut(topupId="tu-1", customerId=CUSTOMER, provider="halyk-epay",
                        amount=500000, status="CREATED", refundedAmount=0,
                        paymentUrl="https://epayment.halykbank.kz/pay/invoices/4821",
                        providerOrderId="4821", createdAt=UNTIL, expiresAt=UNTIL),
    "CREDITED": TopupOut(topupId="tu-1", customerId=CUSTOMER, provider="halyk-epay",
                         amount=500000, status="CREDITED", refundedAmount=0,
                         paymentUrl="https://epayment.halykbank.kz/pay/invoices/4821",
                         providerOrderId="4821", createdAt=UNTIL, creditedAt=UNTIL,
                         expiresAt=UNTIL),
    "FAILED": TopupOut(topupId="tu-3", customerId=CUSTOMER, provider="kapital",
                       amount=150000, status="FAILED", refundedAmount=0,
                       providerOrderId="90817", failureReason="DECLINED", createdAt=UNTIL,
                       expiresAt=UNTIL),
}
REFUND_EXAMPLES: dict[str, BaseModel] = {
    "COMPLETED": TopupRefundOut(refundId="rf-1", topupId="tu-1", amount=50000,
                                status="COMPLETED", operation="refund", createdAt=UNTIL),
    "PENDING": TopupRefundOut(refundId="rf-2", topupId="tu-1", amount=50000,
                              status="PENDING", createdAt=UNTIL),
}

# ---- the route table ---------------------------------------------------------------

# Local error codes and their HTTP status, from the exceptions the server raises.
_LOCAL = {cls.code: cls.http_status for cls in (
    errors.ValidationFailed, errors.Unauthorized, errors.Forbidden, errors.NotFound,
    errors.InsufficientFunds, errors.LimitExceeded, errors.PaymentExpired, errors.InvalidState,
    errors.CustomerMismatch, errors.IdempotencyConflict, errors.KaspiUnavailable,
    errors.AcquirerUnavailable, errors.AcquirerRefusedOrder, errors.RefundExceedsCredit)}
_KASPI_PASSED = (ResultCode.INVALID_TOKEN, ResultCode.PARAM_ILLEGAL, ResultCode.CUSTOM_QR_ERROR,
                 ResultCode.EXPIRED_CODE, ResultCode.PROCESS_FAIL, ResultCode.INVALID_MERCHANT,
                 ResultCode.PAYMENTS_SUSPENDED, ResultCode.UNKNOWN_EXCEPTION,
                 ResultCode.UNKNOWN_SOURCE)
# Where a Kaspi code lands is decided by errors.KaspiRefused, asked here, not repeated.
_STATUS_OF = {**_LOCAL, **{str(c): errors.KaspiRefused(c, "").http_status for c in _KASPI_PASSED},
              "PAYLOAD_TOO_LARGE": 413}
_WHY = {
    "VALIDATION_ERROR": "the request is malformed or breaks a rule (message says which)",
    "UNAUTHORIZED": "missing or unknown bearer token",
    "FORBIDDEN": "a valid token that may not call this (deposits and setting the "
                 "identification level take only DEPOSIT_API_TOKENS, every other call only "
                 "WALLET_API_TOKENS)",
    "LIMIT_EXCEEDED": "over a limit of the customer's identification level (LIMITS_MCI; "
                      "the message names it); nothing moved. A confirm's payment is "
                      "DECLINED and Kaspi told; a deposit or top-up is not recorded",
    "NOT_FOUND": "no such account or payment",
    "INSUFFICIENT_FUNDS": "the balance does not cover the payment (it is DECLINED)",
    "PAYMENT_EXPIRED": "canConfirmUntil has passed (the payment is EXPIRED)",
    "INVALID_STATE": "the payment's status does not allow this",
    "CUSTOMER_MISMATCH": "another customer scanned this payment",
    "IDEMPOTENCY_CONFLICT": "the idempotency key (depositId, topupId, refundId) was used "
                            "with other arguments",
    "ACQUIRER_UNAVAILABLE": "the card acquirer did not answer; the top-up is kept, repeat "
                            "the same request",
    "ACQUIRER_REFUSED": "the card acquirer refused the order; the top-up is FAILED",
    "REFUND_EXCEEDS_CREDITED": "the refunds would add up to more than the top-up credited",
    "KASPI_UNAVAILABLE": "Kaspi did not answer (timeout, network); safe to retry",
    "PAYLOAD_TOO_LARGE": "the body is larger than MAX_BODY_BYTES",
}
_BODY_ERRORS = ("VALIDATION_ERROR", "PAYLOAD_TOO_LARGE")
_AFTER = ("the `next` of the previous page; omitted or empty: from the start. A cursor "
          "beyond the end of the list is 422 VALIDATION_ERROR (the server never hands one "
          "out: `next` is at most the last position returned or the one given)")
_SCAN_KASPI = tuple(str(c) for c in _KASPI_PASSED)
_CHECKOUT_KASPI = ("PARAM_ILLEGAL", "EXPIRED_CODE", "PROCESS_FAIL", "PAYMENTS_SUSPENDED",
                   "UNKNOWN_EXCEPTION", "UNKNOWN_SOURCE")


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None
    examples: Mapping[str, BaseModel] = field(default_factory=dict)
    media_type: str = JSON
    raw_schema: Mapping[str, Any] | None = None  # for answers that are not a model


@dataclass(frozen=True)
class Route:
    listeners: tuple[Listener, ...]
    method: str
    path: str
    operation_id: str
    summary: str
    description: str = ""
    tag: str = "wallet"
    secured: bool = True
    # Which token list may call it (middleware.Scope); a token of the other gets 403.
    deposit_tokens_only: bool = False
    params: tuple[Param, ...] = ()
    request: type[BaseModel] | None = None
    # Request examples stay as written (a bare number stays bare); build() validates them.
    request_examples: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    answers: Mapping[int, Answer] = field(default_factory=dict)
    # Error codes answered as {"error": {code, message}}; the status comes from _STATUS_OF.
    error_codes: tuple[str, ...] = ()
    # Kaspi's codes not in our table are passed through as 502 too.
    passes_kaspi_codes: bool = False


CUSTOMER_ID = Param("customerId", "path", {"type": "string", "pattern": CUSTOMER_ID_PATTERN},
                    "the wallet's own customer id (≤ 12 characters)", required=True)
PAYMENT = Param("paymentId", "path", {"type": "string", "pattern": ID_PATTERN},
                "Kaspi's paymentId, as scan answered it", required=True)
LOCALE = Param("X-Locale", "header", {"type": "string", "enum": list(LOCALES)},
               "passed on to Kaspi; kk-KZ also makes the receipt link Kazakh")
PROBE = ("probes",)
TOPUP = Param("topupId", "path", {"type": "string", "pattern": ID_PATTERN},
              "the topupId the wallet chose", required=True)


def _payment_answer(description: str) -> Answer:
    return Answer(description, PaymentOut, PAYMENT_EXAMPLES)


ROUTES: tuple[Route, ...] = (
    Route(("wallet",), "post", "/v1/accounts/{customerId}/deposits", "createDeposit",
          "Credit a customer's wallet (idempotent on depositId)",
          "How money enters a wallet (production feeds it from core banking). Only a "
          "DEPOSIT_API_TOKENS token may call it. The first deposit creates the account. A "
          "repeat with the same depositId, customer and amount answers 200 and moves "
          "nothing. One deposit is at most DEPOSIT_MAX_AMOUNT. A deposit that would lift "
          "the balance over the cap of the customer's identification level answers 409 "
          "LIMIT_EXCEEDED and records nothing.",
          deposit_tokens_only=True, params=(CUSTOMER_ID,), request=DepositIn,
          request_examples={"deposit": {"depositId": "d-1", "amount": "5000.00"},
                            "bare number": {"depositId": "d-2", "amount": 1500}},
          answers={201: Answer("credited", AccountOut, {
                       "credited": AccountOut(customerId=CUSTOMER, balance=500000)}),
                   200: Answer("a repeat: nothing moved, the current balance", AccountOut)},
          error_codes=("UNAUTHORIZED", "IDEMPOTENCY_CONFLICT", "LIMIT_EXCEEDED",
                       *_BODY_ERRORS)),
    Route(("wallet",), "get", "/v1/accounts/{customerId}", "getAccount",
          "A customer's available balance", params=(CUSTOMER_ID,),
          answers={200: Answer("the account", AccountOut, {
              "account": AccountOut(customerId=CUSTOMER, balance=350000,
                                    identificationLevel="SIMPLIFIED")})},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "VALIDATION_ERROR")),
    Route(("wallet",), "get", "/v1/accounts/{customerId}/statement", "getStatement",
          "Every posting on the customer's account, oldest first",
          "The ledger's own entries on the account: each line's `balanceAfter` is the "
          "previous line's plus its signed `amount` (negative for a debit), and the last "
          "equals the balance. `type`: deposit (depositId), payment and payment_return "
          "(paymentId: a payment Kaspi declined shows both), refund (refundId and the "
          "refunded paymentId); topup and topup_refund (topupId) once top-ups exist. "
          "Follow `next`: pages never skip or repeat a line, even while postings are "
          "being written (docs/design.md).",
          params=(CUSTOMER_ID,
                  Param("after", "query", {"type": "string",
                                           "pattern": f"^$|{cursors.PATTERN}",
                                           "examples": ["0"]},
                        _AFTER),
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": wallet.STATEMENT_MAX_LIMIT,
                                           "default": 100}, "at most this many lines")),
          answers={200: Answer("a page of the statement", StatementOut, {
              "page": StatementOut(entries=[
                  StatementEntryOut(id=101, type="deposit", amount=500000,
                                    balanceAfter=500000, depositId="d-1", createdAt=UNTIL),
                  StatementEntryOut(id=104, type="payment", amount=-150000,
                                    balanceAfter=350000, paymentId=PAYMENT_ID,
                                    createdAt=UNTIL),
                  StatementEntryOut(id=131, type="refund", amount=50000,
                                    balanceAfter=400000, paymentId=PAYMENT_ID,
                                    refundId="Ref1234567", createdAt=UNTIL)],
                  next="131")})},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "VALIDATION_ERROR")),
    Route(("wallet",), "put", "/v1/accounts/{customerId}/identification", "setIdentification",
          "Set the customer's identification level (the bank's core only)",
          "Takes a DEPOSIT_API_TOKENS token; a WALLET_API_TOKENS token gets 403 FORBIDDEN. "
          "New accounts are NONE. An account that does not exist yet is created, empty, at "
          "the level. The level decides the limits (LIMITS_MCI, in MCI of MCI_TENGE): per "
          "payment, per Kazakhstan calendar day and month, and the balance cap; a change "
          "applies to the next confirm.",
          deposit_tokens_only=True, params=(CUSTOMER_ID,), request=IdentificationIn,
          request_examples={"identified": {"level": "FULL"}},
          answers={200: Answer("the level now", IdentificationOut, {
              "identified": IdentificationOut(customerId=CUSTOMER, level="FULL")})},
          error_codes=("UNAUTHORIZED", "FORBIDDEN", *_BODY_ERRORS)),
    Route(("wallet",), "post", "/v1/scan", "scan", "Scan a Kaspi QR code",
          "Asks Kaspi what the QR code is. Payment QR codes (Dynamic, Static, Custom) "
          "create a SCANNED payment; a Refund QR only names Kaspi's refundId. A Dynamic QR "
          "scanned again by the same customer answers the same payment. Kaspi's own error "
          "codes are passed through.",
          params=(LOCALE,), request=ScanIn,
          request_examples={"scan": {"qrCode": "592xxxxxxxxxxxxxxxxxxxxxxxxxxx6574344",
                                     "customerId": CUSTOMER}},
          answers={200: Answer("what the QR code is", ScanOut, SCAN_EXAMPLES)},
          error_codes=("UNAUTHORIZED", "CUSTOMER_MISMATCH", "KASPI_UNAVAILABLE", *_BODY_ERRORS,
                       *_SCAN_KASPI),
          passes_kaspi_codes=True),
    Route(("wallet",), "post", "/v1/payments/{paymentId}/checkout", "checkout",
          "Fill a Custom QR payment's parameters; Kaspi answers the amount",
          "Every parameter is sent to Kaspi: scan's filled values unchanged, the customer's "
          "values for the rest (a drop-down's value must be one of its option keys).",
          params=(PAYMENT, LOCALE), request=CheckoutIn,
          request_examples={"checkout": {"customerId": CUSTOMER, "parameters": [
              {"id": 3932, "value": "123ABC02"}, {"id": 3933, "value": "A"}]}},
          answers={200: Answer("the amount to confirm", CheckoutOut, {"checked out": CheckoutOut(
              paymentId="379eb787-1a36-4096-ac39-4f3006e26a19", amount=20000,
              canConfirmUntil=UNTIL, status="CHECKED_OUT")})},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "CUSTOMER_MISMATCH", "INVALID_STATE",
                       "KASPI_UNAVAILABLE", *_BODY_ERRORS, *_CHECKOUT_KASPI),
          passes_kaspi_codes=True),
    Route(("wallet",), "post", "/v1/payments/{paymentId}/confirm", "confirmPayment",
          "Pay: debit the customer and tell Kaspi",
          "Answers COMPLETED or DECLINED when Kaspi answers within the time budget "
          "(CONFIRM_BUDGET_MS), otherwise PENDING: the server keeps notifying Kaspi and "
          "GET shows the final status. Repeating confirm never debits twice. `amount` is "
          "required for a Static QR (a whole number of tenge); for the others it may only "
          "repeat the payment's amount. A payment over a limit of the customer's "
          "identification level (per payment, Kazakhstan calendar day or month) answers "
          "409 LIMIT_EXCEEDED naming the limit: nothing debited, the payment DECLINED, "
          "Kaspi told it failed.",
          params=(PAYMENT, LOCALE), request=ConfirmIn,
          request_examples={"Dynamic": {"customerId": CUSTOMER},
                            "Static": {"customerId": CUSTOMER, "amount": "1500.00"}},
          answers={200: _payment_answer("the payment: COMPLETED, DECLINED or PENDING")},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "INSUFFICIENT_FUNDS", "LIMIT_EXCEEDED",
                       "PAYMENT_EXPIRED", "INVALID_STATE", "CUSTOMER_MISMATCH",
                       *_BODY_ERRORS)),
    Route(("wallet",), "post", "/v1/payments/{paymentId}/cancel", "cancelPayment",
          "The customer backs out of a SCANNED or CHECKED_OUT payment",
          "CANCELLED at once; Kaspi is told CANCELLED_BY_CLIENT (kaspiAcknowledged says "
          "whether it has answered yet; the server keeps trying). A repeat answers the "
          "same.",
          params=(PAYMENT,), request=CancelIn,
          request_examples={"cancel": {"customerId": CUSTOMER}},
          answers={200: Answer("the payment, CANCELLED", PaymentOut, {"cancelled": _payment(
              status="CANCELLED", amount=None, linkReceipt=None)})},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "INVALID_STATE", "CUSTOMER_MISMATCH",
                       *_BODY_ERRORS)),
    Route(("wallet",), "get", "/v1/payments/{paymentId}", "getPayment",
          "A payment, its status and its refunds", params=(PAYMENT,),
          answers={200: _payment_answer("the payment")},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "VALIDATION_ERROR")),
    Route(("wallet",), "get", "/v1/events", "listEvents",
          "What to tell the customers, in commit-safe order",
          "Follow `next`: pass it as `after` to read the events that follow; a reader that "
          "does so never misses an event, even one whose transaction committed after a "
          "later-numbered event's, and no transaction outside the server's own short "
          "writes can hold an event back (at most EVENTS_HOLD_MS). A cursor is the last "
          "event's place in the feed (\"18\"); cursors of the form \"txid-id\" "
          "from earlier versions are still taken. Types: payment.completed, "
          "payment.declined, refund.credited.",
          params=(Param("after", "query", {"type": "string",
                                           "pattern": f"^$|{cursors.PATTERN}|"
                                                      f"{cursors.LEGACY_PATTERN}",
                                           "examples": ["0"]},
                        _AFTER),
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": wallet.EVENTS_MAX_LIMIT, "default": 100},
                        "at most this many events")),
          answers={200: Answer("a page of events", EventsOut, {"page": EventsOut(events=[
              EventOut(id=17, type="payment.completed", customerId=CUSTOMER,
                       paymentId=PAYMENT_ID, amount=150000, createdAt=UNTIL),
              EventOut(id=18, type="refund.credited", customerId=CUSTOMER,
                       paymentId=PAYMENT_ID, refundId="Ref1234567", amount=50000,
                       createdAt=UNTIL)], next="18")})},
          error_codes=("UNAUTHORIZED", "VALIDATION_ERROR")),
    Route(("wallet",), "post", "/v1/topups", "createTopup",
          "Top up a wallet by card through an acquirer (idempotent on topupId)",
          "The top-up is stored CREATED before the acquirer hears of it; the answer's "
          "paymentUrl is the acquirer's page the app opens. The wallet is credited once, "
          "only after the acquirer's own status API confirms the payment (callbacks on "
          "ACQUIRING_LISTEN trigger the check; without one the server polls until the "
          "acquirer's session ends: then EXPIRED). A repeat with the same body answers 200; "
          "after ACQUIRER_UNAVAILABLE it creates the order. A top-up that would lift the "
          "balance over the cap of the customer's identification level answers 409 "
          "LIMIT_EXCEEDED before the acquirer hears of it. docs/topups.md.",
          request=TopupIn,
          request_examples={"halyk": {"topupId": "tu-1", "customerId": CUSTOMER,
                                      "provider": "halyk-epay", "amount": "5000.00"},
                            "kaspi": {"topupId": "tu-2", "customerId": CUSTOMER,
                                      "provider": "kaspi-ecom", "amount": 5000}},
          answers={201: Answer("created: open paymentUrl", TopupOut, TOPUP_EXAMPLES),
                   200: Answer("a repeat: the same top-up, as it is now", TopupOut)},
          error_codes=("UNAUTHORIZED", "IDEMPOTENCY_CONFLICT", "LIMIT_EXCEEDED",
                       "ACQUIRER_UNAVAILABLE", "ACQUIRER_REFUSED", *_BODY_ERRORS)),
    Route(("wallet",), "get", "/v1/topups/{topupId}", "getTopup",
          "A top-up and its status (CREATED, CREDITED, FAILED, EXPIRED)", params=(TOPUP,),
          answers={200: Answer("the top-up", TopupOut, TOPUP_EXAMPLES)},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "VALIDATION_ERROR")),
    Route(("wallet",), "post", "/v1/topups/{topupId}/refunds", "refundTopup",
          "Money back to the card (halyk-epay, kapital; idempotent on refundId)",
          "The wallet is debited first (INSUFFICIENT_FUNDS when it no longer holds the "
          "money), then the acquirer is told, retried until it answers: PENDING until then. "
          "A final refusal returns the money to the wallet (REFUSED). Refunds never add up "
          "to more than the top-up credited. Kapital: Reverse for the whole amount on the "
          "day it was paid, Refund otherwise.",
          params=(TOPUP,), request=TopupRefundIn,
          request_examples={"partial": {"refundId": "rf-1", "amount": "500.00"}},
          answers={201: Answer("staged, and the acquirer's answer if it came at once",
                               TopupRefundOut, REFUND_EXAMPLES),
                   200: Answer("a repeat: the refund as it is now", TopupRefundOut)},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "INVALID_STATE", "INSUFFICIENT_FUNDS",
                       "REFUND_EXCEEDS_CREDITED", "IDEMPOTENCY_CONFLICT", *_BODY_ERRORS)),
    Route(("wallet",), "get", "/v1/topups/{topupId}/refunds/{refundId}", "getTopupRefund",
          "A refund to the card and its status",
          params=(TOPUP, Param("refundId", "path", {"type": "string", "pattern": ID_PATTERN},
                               "the refundId given", required=True)),
          answers={200: Answer("the refund", TopupRefundOut, REFUND_EXAMPLES)},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "VALIDATION_ERROR")),
    Route(("wallet",), "get", "/v1/reconciliations", "listReconciliations",
          "Reconciliation runs against Kaspi's registries, newest first",
          "One run per imported registry file (`python -m mpp_server reconcile`, "
          "docs/reconciliation.md); `before` pages back by run id.", tag="back office",
          params=(Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": reconciliations.LIST_MAX_LIMIT,
                                           "default": 50}, "at most this many runs"),
                  Param("before", "query", {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
                        "only runs with a smaller id (a run id)")),
          answers={200: Answer("the runs", ReconciliationsOut)},
          error_codes=("UNAUTHORIZED", "VALIDATION_ERROR")),
    Route(("wallet",), "get", "/v1/reconciliations/{runId}", "getReconciliation",
          "One reconciliation run with its discrepancies", tag="back office",
          description="`items` come in pages by id: `nextItemsAfter` (absent on the last "
                      "page) is the next page's `after`.",
          params=(Param("runId", "path", {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        "the run's id", required=True),
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": reconciliations.ITEMS_MAX_LIMIT,
                                           "default": reconciliations.ITEMS_DEFAULT_LIMIT},
                        "at most this many items"),
                  Param("after", "query", {"type": "string", "pattern": cursors.PATTERN},
                        "only items with a greater id (nextItemsAfter); an id beyond the "
                        "run's last item is 422 VALIDATION_ERROR")),
          answers={200: Answer("the run and its discrepancies",
                               ReconciliationOut)},
          error_codes=("UNAUTHORIZED", "NOT_FOUND", "VALIDATION_ERROR")),
    Route(("wallet",), "get", "/healthz", "healthz", "The process is alive", tag="probes",
          secured=False,
          answers={200: Answer("alive", HealthOut, {"ok": HealthOut(status="ok")})}),
    Route(("wallet",), "get", "/readyz", "readyz",
          "The database is reachable and every migration applied", tag="probes",
          secured=False,
          answers={200: Answer("ready", HealthOut, {"ready": HealthOut(status="ready")}),
                   503: Answer("not ready (the detail says why)", HealthOut, {
                       "no database": HealthOut(status="unavailable",
                                                detail="database: connection refused")})}),
    Route(("wallet",), "get", "/metrics", "metrics", "Prometheus metrics", tag="probes",
          secured=False,
          answers={200: Answer("the Prometheus text format", media_type="text/plain",
                               raw_schema={"type": "string"})}),
    Route(("wallet", "kaspi"), "get", "/openapi.json", "openapi",
          "This description (each listener serves its own part)", tag="probes",
          secured=False,
          answers={200: Answer("the OpenAPI 3.1 document", raw_schema={"type": "object"}),
                   403: Answer("Kaspi-facing listener only: the source address is outside "
                               "KASPI_ALLOWED_NETWORKS", RefundResultOut)}),
    Route(("kaspi",), "post", "/refund", "refund", "Kaspi refunds a payment (regulation §4.4)",
          "Called by Kaspi over the IPSec tunnel, only from KASPI_ALLOWED_NETWORKS. Exactly "
          "one credit per refundId; a repeat gets the same answer. Refunds of a payment never "
          "add up to more than the payment.\n\n"
          "Keys are matched after trimming whitespace: the regulation's own example sends "
          "`\"paymentId \"` and `\"refundId \"` (with a trailing space), read as paymentId "
          "and refundId; the same key given with and without the space must agree. "
          "`refundAmount` may be a string (`\"100.00\"`) or a bare JSON number "
          "(`100.00`, `100`). Fields not listed are ignored. The regulation's example, "
          "accepted as is:\n\n"
          "```json\n"
          '{"refundAmount": 100.00, "customerId": "9009********", '
          '"paymentId ": "abc1234567890", "refundId ": "Ref1234567", '
          '"linkReceipt": "https://receipt.kaspi.kz/ext?TranId=a3ffba1a-5add"}\n'
          "```",
          tag="kaspi", secured=False, request=RefundIn,
          request_examples={
              "refund": {"customerId": CUSTOMER, "paymentId": PAYMENT_ID,
                         "refundAmount": "100.00", "refundId": "Ref1234567",
                         "linkReceipt": RECEIPT},
              "bare number": {"customerId": CUSTOMER, "paymentId": PAYMENT_ID,
                              "refundAmount": 100, "refundId": "Ref1234568",
                              "linkReceipt": RECEIPT}},
          answers={
              200: Answer("every business outcome: SUCCESS, or PARAM_ILLEGAL with the reason "
                          "(unknown payment, another customer, more than the payment, ...)",
                          RefundResultOut, {
                              "SUCCESS": RefundResultOut(result=ResultOut(
                                  resultCode="SUCCESS", resultMessage="success")),
                              "PARAM_ILLEGAL": RefundResultOut(result=ResultOut(
                                  resultCode="PARAM_ILLEGAL",
                                  resultMessage="refund would exceed the payment: "
                                                "5000 tiyn left to refund"))}),
              400: Answer("PARAM_ILLEGAL: the body cannot be read (malformed JSON, a missing, "
                          "over-long or malformed field); nothing written",
                          RefundResultOut, {"PARAM_ILLEGAL": RefundResultOut(
                              result=ResultOut(resultCode="PARAM_ILLEGAL",
                                                     resultMessage="customerId: Field "
                                                                   "required"))}),
              403: Answer("PARAM_ILLEGAL: the source address is outside "
                          "KASPI_ALLOWED_NETWORKS; the body is not read", RefundResultOut),
              413: Answer("PARAM_ILLEGAL: the body is larger than MAX_BODY_BYTES",
                          RefundResultOut),
              500: Answer("UNKNOWN_EXCEPTION: we failed (database down); nothing committed, "
                          "Kaspi retries", RefundResultOut)}),
)

# ---- building the document ---------------------------------------------------------


def _dump(example: Any) -> Any:
    if isinstance(example, BaseModel):
        return example.model_dump(mode="json", exclude_none=True)
    return example


def _examples(examples: Mapping[str, Any]) -> dict[str, Any]:
    return {name: {"value": _dump(value)} for name, value in examples.items()}


def _error_answers(route: Route) -> dict[int, dict[str, Any]]:
    by_status: dict[int, list[str]] = {}
    for code in route.error_codes + (("FORBIDDEN",) if route.secured else ()):
        by_status.setdefault(_STATUS_OF[code], []).append(code)
    if route.passes_kaspi_codes:
        by_status.setdefault(502, [])
    answers: dict[int, dict[str, Any]] = {}
    for status, codes in sorted(by_status.items()):
        lines = [f"- `{c}`: {_WHY.get(c, 'passed through from Kaspi')}" for c in codes]
        if status == 502:
            lines.append("- any other error code Kaspi answers, passed through")
        examples = {c: ErrorOut(error=ErrorBody(code=c, message=_WHY.get(c, "Kaspi's "
                                                "resultMessage"))) for c in codes}
        answers[status] = {
            "description": "`{\"error\": {code, message}}` with one of:\n" + "\n".join(lines),
            "content": {JSON: {"schema": {"$ref": REF.format(model="ErrorOut")},
                               "examples": _examples(examples)}},
            "x-error-codes": codes,
        }
    return answers


def _operation(route: Route, refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    """`refs`: (model, mode) -> {"$ref": ...}, as models_json_schema answers."""
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary,
                          "tags": [route.tag]}
    if route.description:
        op["description"] = route.description
    scheme = "depositAuth" if route.deposit_tokens_only else "bearerAuth"
    op["security"] = [{scheme: []}] if route.secured else []
    if route.params:
        op["parameters"] = [{"name": p.name, "in": p.where, "required": p.required,
                             "description": p.description, "schema": dict(p.schema)}
                            for p in route.params]
    if route.request is not None:
        media: dict[str, Any] = {"schema": refs[(route.request, "validation")]}
        for example in route.request_examples.values():
            route.request.model_validate(example)  # an example the server refuses is a bug
        if route.request_examples:
            media["examples"] = _examples(route.request_examples)
        op["requestBody"] = {"required": True, "content": {JSON: media}}
    responses: dict[int, dict[str, Any]] = {}
    for status, answer in route.answers.items():
        schema = (refs[(answer.model, "serialization")] if answer.model is not None
                  else dict(answer.raw_schema or {}))
        content: dict[str, Any] = {"schema": schema}
        if answer.examples:
            content["examples"] = _examples(answer.examples)
        responses[status] = {"description": answer.description,
                             "content": {answer.media_type: content}}
    responses.update(_error_answers(route))
    op["responses"] = {str(status): responses[status] for status in sorted(responses)}
    return op


def _models(routes: Iterable[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for route in routes:
        if route.request is not None:
            wanted[(route.request, "validation")] = None
        for answer in route.answers.values():
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
        if route.error_codes or route.passes_kaspi_codes:
            wanted[(ErrorOut, "serialization")] = None
    return list(wanted)


def _servers() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    defaults = Settings.model_fields
    wallet_listen = defaults["wallet_listen"].default
    kaspi_listen = defaults["kaspi_listen"].default
    return ([{"url": f"http://{wallet_listen}", "description": "wallet API (WALLET_LISTEN)"}],
            [{"url": f"http://{kaspi_listen}",
              "description": "Kaspi-facing API (KASPI_LISTEN), over the IPSec tunnel"}])


def build(which: Which = "all") -> dict[str, Any]:
    """The OpenAPI 3.1 document of one listener, or of both ("all", with servers)."""
    routes = [r for r in ROUTES if which == "all" or which in r.listeners]
    refs, defs = models_json_schema(_models(routes), ref_template=REF)
    wallet_servers, kaspi_servers = _servers()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        item = paths.setdefault(route.path, {})
        item[route.method] = _operation(route, refs)
        if which == "all" and route.listeners == ("kaspi",):
            item["servers"] = kaspi_servers
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": {"all": "mpp-server", "wallet": "mpp-server wallet API",
                      "kaspi": "mpp-server Kaspi-facing API"}[which],
            "version": __version__,
            "description": "The server side of a wallet whose customers pay Kaspi Pay QR "
                           "codes (shared/spec/wallet-api.md). Amounts are strings in tenge "
                           "with two decimals (\"1500.00\"), timestamps ISO 8601 with "
                           "offset. Wallet API errors are `{\"error\": {code, message}}`; "
                           "the Kaspi-facing `/refund` always answers `{\"result\": "
                           "{resultCode, resultMessage}}`. On every path, in the "
                           "listener's form: a request line over "
                           f"{unreadable.MAX_REQUEST_LINE_BYTES} bytes is 414 "
                           "(URI_TOO_LONG), a header over "
                           f"{unreadable.MAX_HEADER_FIELD_BYTES} bytes or more than "
                           f"{unreadable.MAX_HEADERS} headers 431 (HEADERS_TOO_LARGE), "
                           "a request that is not HTTP/1.1 400 (VALIDATION_ERROR); Kaspi's "
                           "form says PARAM_ILLEGAL.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer",
                    "description": "a token from WALLET_API_TOKENS (comma-separated, "
                                   "several for rotation); /v1 paths only"},
                "depositAuth": {
                    "type": "http", "scheme": "bearer",
                    "description": "a token from DEPOSIT_API_TOKENS (the core-banking "
                                   "side): the only tokens that may create money or set a "
                                   "customer's identification level"}},
        },
        "tags": [{"name": "wallet", "description": "the wallet's mobile backend calls these"},
                 {"name": "probes", "description": "no token: keep the listener private"},
                 {"name": "kaspi", "description": "Kaspi calls this over the IPSec tunnel"}],
    }
    if which == "all":
        doc["servers"] = wallet_servers
    return doc


def render(document: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, indented, so `make openapi` output is deterministic."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def add_routes(app: web.Application, listener: Listener) -> None:
    text = render(build(listener))

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type=JSON)

    app.router.add_get("/openapi.json", openapi_json)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpp_server openapi",
        description="Print the OpenAPI 3.1 description (both listeners by default; "
                    "`make openapi` writes it to docs/openapi.json).")
    parser.add_argument("--listener", choices=("all", "wallet", "kaspi"), default="all",
                        help="only one listener's part, as it serves at /openapi.json")
    args = parser.parse_args(argv)
    print(render(build(args.listener)), end="")
    return 0
