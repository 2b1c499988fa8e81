"""Every route of the server, declared once (http/routing.py says who reads what): the
wallet API, the Kaspi-facing `/refund`, the acquirers' callbacks and the probes."""

from __future__ import annotations

from mpp_server import cursors, errors
from mpp_server.http import (
    acquiring_listener,
    disputes,
    reconciliations,
    refund_listener,
    topups,
    wallet,
)
from mpp_server.http.examples import (
    CUSTOMER,
    DISPUTE_EXAMPLES,
    EVENT_EXAMPLES,
    PAYMENT_EXAMPLES,
    PAYMENT_ID,
    RECEIPT,
    REFUND_EXAMPLES,
    SCAN_EXAMPLES,
    TOPUP_EXAMPLES,
    UNTIL,
    payment_example,
)
from mpp_server.http.models import (
    CUSTOMER_ID_PATTERN,
    ID_PATTERN,
    AccountOut,
    CancelIn,
    CheckoutIn,
    CheckoutOut,
    ConfirmIn,
    DepositIn,
    DisputeIn,
    DisputeOut,
    EventsOut,
    HealthOut,
    IdentificationIn,
    IdentificationOut,
    PaymentOut,
    ScanIn,
    ScanOut,
    StatementEntryOut,
    StatementOut,
    TopupIn,
    TopupOut,
    TopupRefundIn,
    TopupRefundOut,
    WithdrawIn,
)
from mpp_server.http.refund_listener import RefundIn, RefundResultOut
from mpp_server.http.routing import Answer, Param, Rerun, Route, Scope, openapi_json
from mpp_server.kaspi_client.models import LOCALES, ResultOut
from mpp_server.reconcile.report import ReconciliationOut, ReconciliationsOut

CUSTOMER_ID = Param("customerId", "path", {"type": "string", "pattern": CUSTOMER_ID_PATTERN},
                    "the wallet's own customer id (≤ 12 characters)", required=True)
PAYMENT = Param("paymentId", "path", {"type": "string", "pattern": ID_PATTERN},
                "Kaspi's paymentId, as scan answered it", required=True)
LOCALE = Param("X-Locale", "header", {"type": "string", "enum": list(LOCALES)},
               "passed on to Kaspi; kk-KZ also makes the receipt link Kazakh")
DISPUTE = Param("disputeId", "path", {"type": "string", "pattern": ID_PATTERN},
                "the disputeId the wallet chose", required=True)
TOPUP = Param("topupId", "path", {"type": "string", "pattern": ID_PATTERN},
              "the topupId the wallet chose", required=True)


AFTER = ("the `next` of the previous page; omitted or empty: from the start. A cursor "
         "beyond the end of the list is 422 VALIDATION_ERROR (the server never hands one "
         "out: `next` is at most the last position returned or the one given)")


def _payment_answer(description: str) -> Answer:
    return Answer(description, PaymentOut, PAYMENT_EXAMPLES)


ROUTES: tuple[Route, ...] = (
    Route(("wallet",), "post",
          "/v1/accounts/{customerId}/deposits", wallet.deposit, "createDeposit",
          "Credit a customer's wallet (idempotent on depositId)",
          "How money enters a wallet (production feeds it from core banking). Only a "
          "DEPOSIT_API_TOKENS token may call it. The first deposit creates the account. A "
          "repeat with the same depositId, customer and amount answers 200 and moves "
          "nothing. One deposit is at most DEPOSIT_MAX_AMOUNT. A deposit that would lift "
          "the balance over the cap of the customer's identification level answers 409 "
          "LIMIT_EXCEEDED and records nothing.",
          scope=Scope.DEPOSIT, rerun=Rerun.KEYED, params=(CUSTOMER_ID,), request=DepositIn,
          request_examples={"deposit": {"depositId": "d-1", "amount": "5000.00"},
                            "bare number": {"depositId": "d-2", "amount": 1500}},
          answers={201: Answer("credited", AccountOut, {
                       "credited": AccountOut(customerId=CUSTOMER, balance=500000)}),
                   200: Answer("a repeat: nothing moved, the current balance", AccountOut)},
          errors=(errors.IdempotencyConflict, errors.LimitExceeded)),
    Route(("wallet",), "get", "/v1/accounts/{customerId}", wallet.account, "getAccount",
          "A customer's available balance", params=(CUSTOMER_ID,),
          answers={200: Answer("the account", AccountOut, {
              "account": AccountOut(customerId=CUSTOMER, balance=350000,
                                    identificationLevel="SIMPLIFIED")})},
          errors=(errors.NotFound,)),
    Route(("wallet",), "get",
          "/v1/accounts/{customerId}/statement", wallet.statement, "getStatement",
          "Every posting on the customer's account, oldest first",
          "The ledger's own entries on the account: each line's `balanceAfter` is the "
          "previous line's plus its signed `amount` (negative for a debit), and the last "
          "equals the balance. `type`: deposit (depositId), payment and payment_return "
          "(paymentId: a payment Kaspi declined shows both), refund (refundId and the "
          "refunded paymentId); topup and topup_refund (topupId) once top-ups exist. "
          "Follow `next`: pages never skip or repeat a line, even while postings are "
          "being written (docs/money.md).",
          params=(CUSTOMER_ID,
                  Param("after", "query", {"type": "string",
                                           "pattern": f"^$|{cursors.PATTERN}",
                                           "examples": ["0"]},
                        AFTER),
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
          errors=(errors.NotFound,)),
    Route(("wallet",), "put", "/v1/accounts/{customerId}/identification",
          wallet.set_identification, "setIdentification",
          "Set the customer's identification level (the bank's core only)",
          "Takes a DEPOSIT_API_TOKENS token; a WALLET_API_TOKENS token gets 403 FORBIDDEN. "
          "New accounts are NONE. An account that does not exist yet is created, empty, at "
          "the level. The level decides the limits (LIMITS_MCI, in MCI of MCI_TENGE): per "
          "payment, per Kazakhstan calendar day and month, and the balance cap; a change "
          "applies to the next confirm.",
          scope=Scope.DEPOSIT, params=(CUSTOMER_ID,), request=IdentificationIn,
          request_examples={"identified": {"level": "FULL"}},
          answers={200: Answer("the level now", IdentificationOut, {
              "identified": IdentificationOut(customerId=CUSTOMER, level="FULL")})}),
    Route(("wallet",), "post", "/v1/scan", wallet.scan, "scan", "Scan a Kaspi QR code",
          "Asks Kaspi what the QR code is. Payment QR codes (Dynamic, Static, Custom) "
          "create a SCANNED payment; a Refund QR only names Kaspi's refundId. A Dynamic QR "
          "scanned again by the same customer answers the same payment. Kaspi's own error "
          "codes are passed through. A payment answer without canConfirmUntil (a Dynamic or "
          "Static QR) or a Dynamic one without its amount is KASPI_DEFECTIVE_ANSWER and "
          "nothing is recorded; a missing or over-long merchantMCC or authorType is passed "
          "on as Kaspi sent it (an empty merchantMCC when none).",
          params=(LOCALE,), request=ScanIn,
          request_examples={"scan": {"qrCode": "592xxxxxxxxxxxxxxxxxxxxxxxxxxx6574344",
                                     "customerId": CUSTOMER}},
          answers={200: Answer("what the QR code is", ScanOut, SCAN_EXAMPLES)},
          errors=(errors.CustomerMismatch, errors.KaspiUnavailable,
                  errors.KaspiDefectiveAnswer),
          passes_kaspi_codes=True),
    Route(("wallet",), "post", "/v1/payments/{paymentId}/checkout", wallet.checkout, "checkout",
          "Fill a Custom QR payment's parameters; Kaspi answers the amount",
          "Every parameter is sent to Kaspi: scan's filled values unchanged, the customer's "
          "values for the rest (a drop-down's value must be one of its option keys). "
          "Kaspi's PROCESS_FAIL (do not retry) makes the payment FAILED and its EXPIRED_CODE "
          "makes it EXPIRED: a repeated checkout answers the same error without asking "
          "Kaspi again. An amount with tiyn (notifyPayment could not carry it) or an answer "
          "without an amount or any deadline is KASPI_DEFECTIVE_ANSWER, nothing recorded.",
          params=(PAYMENT, LOCALE), request=CheckoutIn,
          request_examples={"checkout": {"customerId": CUSTOMER, "parameters": [
              {"id": 3932, "value": "123ABC02"}, {"id": 3933, "value": "A"}]}},
          answers={200: Answer("the amount to confirm", CheckoutOut, {"checked out": CheckoutOut(
              paymentId="379eb787-1a36-4096-ac39-4f3006e26a19", amount=20000,
              canConfirmUntil=UNTIL, status="CHECKED_OUT")})},
          errors=(errors.NotFound, errors.CustomerMismatch, errors.InvalidState,
                  errors.KaspiUnavailable, errors.KaspiDefectiveAnswer),
          passes_kaspi_codes=True),
    Route(("wallet",), "post", "/v1/payments/{paymentId}/confirm", wallet.confirm, "confirmPayment",
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
          errors=(errors.NotFound, errors.InsufficientFunds, errors.LimitExceeded,
                  errors.PaymentExpired, errors.InvalidState, errors.CustomerMismatch)),
    Route(("wallet",), "post", "/v1/payments/{paymentId}/cancel", wallet.cancel, "cancelPayment",
          "The customer backs out of a SCANNED or CHECKED_OUT payment",
          "CANCELLED at once; Kaspi is told CANCELLED_BY_CLIENT (kaspiAcknowledged says "
          "whether it has answered yet; the server keeps trying). A repeat answers the "
          "same.",
          params=(PAYMENT,), request=CancelIn,
          request_examples={"cancel": {"customerId": CUSTOMER}},
          answers={200: Answer("the payment, CANCELLED", PaymentOut, {"cancelled": payment_example(
              status="CANCELLED", amount=None, linkReceipt=None)})},
          errors=(errors.NotFound, errors.InvalidState, errors.CustomerMismatch)),
    Route(("wallet",), "get", "/v1/payments/{paymentId}", wallet.get_payment, "getPayment",
          "A payment, its status and its refunds", params=(PAYMENT,),
          answers={200: _payment_answer("the payment")},
          errors=(errors.NotFound,)),
    Route(("wallet",), "get", "/v1/events", wallet.list_events, "listEvents",
          "What to tell the customers, in commit-safe order",
          "Follow `next`: pass it as `after` to read the events that follow; a reader that "
          "does so never misses an event, even one whose transaction committed after a "
          "later-numbered event's, and no transaction outside the server's own short "
          "writes can hold an event back (at most EVENTS_HOLD_MS). A cursor is the last "
          "event's place in the feed (\"18\"); cursors of the form \"txid-id\" "
          "from earlier versions are still taken. Types: payment.completed, "
          "payment.declined, refund.credited, topup.credited, topup.failed, "
          "dispute.opened, dispute.resolved (skip a type you do not know). "
          "payment.completed and refund.credited carry Kaspi's receipt (linkReceipt, "
          "Kazakh when the payment was made in kk-KZ). With WEBHOOK_URL set, each event "
          "is also POSTed there, signed (Standard Webhooks; docs/notices.md), its `id` "
          "the webhook-id: a reader of both drops the repeats by id.",
          params=(Param("after", "query", {"type": "string",
                                           "pattern": f"^$|{cursors.PATTERN}|"
                                                      f"{cursors.LEGACY_PATTERN}",
                                           "examples": ["0"]},
                        AFTER),
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": wallet.EVENTS_MAX_LIMIT, "default": 100},
                        "at most this many events")),
          answers={200: Answer("a page of events", EventsOut, {"page": EventsOut(
              events=EVENT_EXAMPLES, next="19")})}),
    Route(("wallet",), "post", "/v1/disputes", disputes.create_dispute, "createDispute",
          "A customer disputes a payment (idempotent on disputeId)",
          "The dispute is OPEN, due DISPUTE_RESPONSE_HOURS (default 24) after it was "
          "opened (dueAt); an operator resolves it (REJECTED or REFUNDED), the wallet may "
          "withdraw it, and Kaspi's refunds of the payment resolve it REFUNDED by themselves "
          "once those credited since it opened cover its amount. Only a PENDING or "
          "COMPLETED payment can be disputed, by its own customer, for at most its amount "
          "(absent: all of it); a payment may carry several disputes. A repeat with the "
          "same body answers 200; the refusals record nothing. Events dispute.opened and "
          "dispute.resolved.",
          rerun=Rerun.KEYED, request=DisputeIn,
          request_examples={
              "whole payment": {"disputeId": "dp-1", "paymentId": PAYMENT_ID,
                                "customerId": CUSTOMER, "reason": "Charged twice"},
              "part": {"disputeId": "dp-2", "paymentId": PAYMENT_ID, "customerId": CUSTOMER,
                       "reason": "One item was missing", "amount": "500.00"}},
          answers={201: Answer("opened", DisputeOut, {"OPEN": DISPUTE_EXAMPLES["OPEN"]}),
                   200: Answer("a repeat: the dispute as it is now", DisputeOut,
                               DISPUTE_EXAMPLES)},
          errors=(errors.NotFound, errors.CustomerMismatch, errors.InvalidState,
                  errors.IdempotencyConflict)),
    Route(("wallet",), "get", "/v1/disputes/{disputeId}", disputes.get_dispute, "getDispute",
          "A dispute: OPEN, or RESOLVED with its resolution (REFUNDED, REJECTED, WITHDRAWN)",
          params=(DISPUTE,),
          answers={200: Answer("the dispute", DisputeOut, DISPUTE_EXAMPLES)},
          errors=(errors.NotFound,)),
    Route(("wallet",), "post", "/v1/disputes/{disputeId}/withdraw", disputes.withdraw_dispute,
          "withdrawDispute", "The customer withdraws an OPEN dispute",
          "RESOLVED with WITHDRAWN, and dispute.resolved. A repeat answers the same; a "
          "dispute resolved otherwise answers 409 INVALID_STATE.",
          rerun=Rerun.KEYED, params=(DISPUTE,), request=WithdrawIn,
          request_examples={"withdraw": {"customerId": CUSTOMER}},
          answers={200: Answer("the dispute, WITHDRAWN", DisputeOut,
                               {"WITHDRAWN": DISPUTE_EXAMPLES["WITHDRAWN"]})},
          errors=(errors.NotFound, errors.CustomerMismatch, errors.InvalidState)),
    Route(("wallet",), "post", "/v1/topups", topups.create_topup, "createTopup",
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
          errors=(errors.IdempotencyConflict, errors.LimitExceeded, errors.AcquirerUnavailable,
                  errors.AcquirerRefusedOrder)),
    Route(("wallet",), "get", "/v1/topups/{topupId}", topups.get_topup, "getTopup",
          "A top-up and its status (CREATED, CREDITED, FAILED, EXPIRED)", params=(TOPUP,),
          answers={200: Answer("the top-up", TopupOut, TOPUP_EXAMPLES)},
          errors=(errors.NotFound,)),
    Route(("wallet",), "post", "/v1/topups/{topupId}/refunds", topups.create_refund, "refundTopup",
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
          errors=(errors.NotFound, errors.InvalidState, errors.InsufficientFunds,
                  errors.RefundExceedsCredit, errors.IdempotencyConflict)),
    Route(("wallet",), "get",
          "/v1/topups/{topupId}/refunds/{refundId}", topups.get_refund, "getTopupRefund",
          "A refund to the card and its status",
          params=(TOPUP, Param("refundId", "path", {"type": "string", "pattern": ID_PATTERN},
                               "the refundId given", required=True)),
          answers={200: Answer("the refund", TopupRefundOut, REFUND_EXAMPLES)},
          errors=(errors.NotFound,)),
    Route(("wallet",), "get",
          "/v1/reconciliations", reconciliations.list_reconciliations, "listReconciliations",
          "Reconciliation runs against Kaspi's registries, newest first",
          "One run per imported registry file (`python -m mpp_server reconcile`, "
          "docs/reconciliation.md); `before` pages back by run id.", tag="back office",
          params=(Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": reconciliations.LIST_MAX_LIMIT,
                                           "default": 50}, "at most this many runs"),
                  Param("before", "query", {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
                        "only runs with a smaller id (a run id)")),
          answers={200: Answer("the runs", ReconciliationsOut)}),
    Route(("wallet",), "get",
          "/v1/reconciliations/{runId}", reconciliations.get_reconciliation, "getReconciliation",
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
          errors=(errors.NotFound,)),
    Route(("wallet",), "get",
          "/healthz", wallet.healthz, "healthz", "The process is alive", tag="probes",
          scope=Scope.PUBLIC,
          answers={200: Answer("alive", HealthOut, {"ok": HealthOut(status="ok")})}),
    Route(("wallet",), "get", "/readyz", wallet.readyz, "readyz",
          "The database is reachable and every migration applied", tag="probes",
          scope=Scope.PUBLIC,
          answers={200: Answer("ready", HealthOut, {"ready": HealthOut(status="ready")}),
                   503: Answer("not ready (the detail says why)", HealthOut, {
                       "no database": HealthOut(status="unavailable",
                                                detail="database: connection refused")})}),
    Route(("wallet",), "get",
          "/metrics", wallet.metrics, "metrics", "Prometheus metrics", tag="probes",
          scope=Scope.PUBLIC,
          answers={200: Answer("the Prometheus text format", media_type="text/plain",
                               raw_schema={"type": "string"})}),
    Route(("wallet", "kaspi"), "get", "/openapi.json", openapi_json, "openapi",
          "This description (each listener serves its own part)", tag="probes",
          scope=Scope.PUBLIC,
          answers={200: Answer("the OpenAPI 3.1 document", raw_schema={"type": "object"}),
                   403: Answer("Kaspi-facing listener only: the source address is outside "
                               "KASPI_ALLOWED_NETWORKS", RefundResultOut)}),
    Route(("kaspi",), "post",
          "/refund", refund_listener.refund, "refund", "Kaspi refunds a payment (regulation §4.4)",
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
          tag="kaspi", scope=Scope.KASPI, request=RefundIn,
          request_examples={
              "refund": {"customerId": CUSTOMER, "paymentId": PAYMENT_ID,
                         "refundAmount": "100.00", "refundId": "Ref1234567",
                         "linkReceipt": RECEIPT},
              "bare number": {"customerId": CUSTOMER, "paymentId": PAYMENT_ID,
                              "refundAmount": 100, "refundId": "Ref1234568",
                              "linkReceipt": RECEIPT}},
          answers={
              200: Answer("every business outcome (docs/refunds.md has the table): SUCCESS; "
                          "PARAM_ILLEGAL, a wrong parameter (an unknown payment, another "
                          "customer, a zero amount, a refundId used with other arguments); "
                          "PROCESS_FAIL, the payment refuses it and a repeat cannot help "
                          "(not completed, more than is left to refund). A repeat of a "
                          "refundId gets the answer stored for it",
                          RefundResultOut, {
                              "SUCCESS": RefundResultOut(result=ResultOut(
                                  resultCode="SUCCESS", resultMessage="success")),
                              "PARAM_ILLEGAL": RefundResultOut(result=ResultOut(
                                  resultCode="PARAM_ILLEGAL",
                                  resultMessage="unknown paymentId")),
                              "PROCESS_FAIL": RefundResultOut(result=ResultOut(
                                  resultCode="PROCESS_FAIL",
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
    *(Route(("acquiring",), method, f"/callbacks/{provider}", handler,
            f"{operation}Callback{method.capitalize()}", f"{name} says an order changed",
            f"Never trusted: the body only names the order, and the server then asks {name}'s "
            "own status API (in the background; the callback is answered at once). "
            "docs/topups.md.", tag="acquiring", scope=Scope.ACQUIRER,
            answers={200: Answer("received", media_type=media, raw_schema={})})
      for provider, name, operation, method, handler, media in (
          ("halyk-epay", "Halyk ePay", "halykEpay", "post", acquiring_listener.halyk_callback,
           "text/plain"),
          ("kapital", "Kapital Bank", "kapital", "get", acquiring_listener.kapital_callback,
           "text/plain"),
          ("kapital", "Kapital Bank", "kapital", "post", acquiring_listener.kapital_callback,
           "text/plain"),
          ("kaspi-ecom", "Kaspi", "kaspiEcom", "post", acquiring_listener.kaspi_callback,
           "application/json"))),
)
