"""The wallet API's disputes (docs/notices.md): thin handlers over domain/disputes.py
(declared, with their paths and errors, in http/routes.py)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from mpp_server.domain import disputes
from mpp_server.errors import ValidationFailed
from mpp_server.http.middleware import SERVICES, json_response, parse_body
from mpp_server.http.models import DisputeIn, DisputeOut, WithdrawIn


def dispute_out(row: asyncpg.Record) -> DisputeOut:
    return DisputeOut(
        disputeId=row["dispute_id"], paymentId=row["payment_id"],
        customerId=row["customer_id"], status=row["status"], reason=row["reason"],
        amount=row["amount_tiyn"], refundedAmount=row["refunded_tiyn"],
        createdAt=row["created_at"], dueAt=row["due_at"], resolution=row["resolution"],
        note=row["note"], resolvedAt=row["resolved_at"])


async def create_dispute(request: web.Request) -> web.Response:
    body = await parse_body(request, DisputeIn)
    if body.amount is not None and body.amount <= 0:
        raise ValidationFailed("amount must be positive")
    svc = request.app[SERVICES]
    opened = await disputes.open_dispute(
        svc.pool, disputes.DisputeRequest(body.disputeId, body.paymentId, body.customerId,
                                          body.reason, body.amount),
        svc.settings.dispute_response_hours)
    return json_response(dispute_out(opened.dispute), status=201 if opened.created else 200)


async def get_dispute(request: web.Request) -> web.Response:
    row = await disputes.get(request.app[SERVICES].pool, request.match_info["disputeId"])
    return json_response(dispute_out(row))


async def withdraw_dispute(request: web.Request) -> web.Response:
    body = await parse_body(request, WithdrawIn)
    row = await disputes.withdraw(request.app[SERVICES].pool,
                                  request.match_info["disputeId"], body.customerId)
    return json_response(dispute_out(row))
