"""The wallet API's top-ups by card (shared/spec/wallet-api.md, "Top-ups through card
acquirers"): thin handlers over domain/topups.py and domain/topup_refunds.py."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from mpp_server.acquirers.base import Provider
from mpp_server.domain.topup_refunds import TopupRefunds
from mpp_server.domain.topups import Topups
from mpp_server.errors import NotFound, ValidationFailed
from mpp_server.http.middleware import json_response, parse_body
from mpp_server.http.models import (
    TopupIn,
    TopupOut,
    TopupRefundIn,
    TopupRefundOut,
)
from mpp_server.journal import Journal
from mpp_server.money import is_whole_tenge


@dataclass(frozen=True)
class TopupServices:
    topups: Topups
    refunds: TopupRefunds
    journal: Journal  # the acquiring listener records each callback


TOPUP_SERVICES: web.AppKey[TopupServices] = web.AppKey("topups", TopupServices)


def topup_out(row: asyncpg.Record) -> TopupOut:
    return TopupOut(
        topupId=row["topup_id"], customerId=row["customer_id"], provider=row["provider"],
        amount=row["amount_tiyn"], status=row["status"], refundedAmount=row["refunded_tiyn"],
        paymentUrl=row["payment_url"], providerOrderId=row["provider_order_id"],
        failureReason=row["failure_reason"], createdAt=row["created_at"],
        creditedAt=row["credited_at"], expiresAt=row["expires_at"])


def refund_out(row: asyncpg.Record) -> TopupRefundOut:
    return TopupRefundOut(
        refundId=row["refund_id"], topupId=row["topup_id"], amount=row["amount_tiyn"],
        status=row["status"], operation=row["operation"], reason=row["acquirer_reason"],
        createdAt=row["created_at"])


def _topup_id(request: web.Request) -> str:
    return request.match_info["topupId"]


async def create_topup(request: web.Request) -> web.Response:
    body = await parse_body(request, TopupIn)
    provider = Provider(body.provider)
    if body.amount <= 0:
        raise ValidationFailed("amount must be positive")
    if provider is Provider.KASPI_ECOM and not is_whole_tenge(body.amount):
        raise ValidationFailed("kaspi-ecom takes whole tenge")
    row, created = await request.app[TOPUP_SERVICES].topups.create(
        body.topupId, body.customerId, provider, body.amount)
    return json_response(topup_out(row), status=201 if created else 200)


async def get_topup(request: web.Request) -> web.Response:
    return json_response(topup_out(await request.app[TOPUP_SERVICES].topups.get(
        _topup_id(request))))


async def create_refund(request: web.Request) -> web.Response:
    topup_id = _topup_id(request)
    body = await parse_body(request, TopupRefundIn)
    if body.amount <= 0:
        raise ValidationFailed("amount must be positive")
    row, created = await request.app[TOPUP_SERVICES].refunds.request(
        topup_id, body.refundId, body.amount)
    return json_response(refund_out(row), status=201 if created else 200)


async def get_refund(request: web.Request) -> web.Response:
    topup_id = _topup_id(request)
    refund_id = request.match_info["refundId"]
    row = await request.app[TOPUP_SERVICES].refunds.get(refund_id)
    if row is None or row["topup_id"] != topup_id:
        raise NotFound(f"no refund {refund_id!r} of this top-up")
    return json_response(refund_out(row))
