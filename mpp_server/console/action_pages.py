"""The forms that change something (POST): each calls one action of console/actions.py
(one transaction with its journal row) and redirects back to the page with a notice.
console/web.py has already checked the session, the CSRF token and the role."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from mpp_server import audit
from mpp_server.audit import Actor
from mpp_server.console import actions
from mpp_server.console.actions import ActionRefused
from mpp_server.console.operators import OperatorError, Role
from mpp_server.console.web import Problem, form_of, pool_of, requires, see_other, session_of
from mpp_server.domain import disputes
from mpp_server.domain.limits import Level
from mpp_server.domain.outcomes import DisputeResolution, WebhookReplayOutcome
from mpp_server.errors import InvalidState, NotFound, ValidationFailed
from mpp_server.reconcile import store
from mpp_server.webhooks import store as webhook_store


def _actor(request: web.Request) -> Actor:
    session = session_of(request)
    return Actor(session.login, audit.Via.CONSOLE, session.operator_id)


def _back(path: str, done: str) -> web.Response:
    return see_other(f"{path}?done={done}")


async def acknowledge(request: web.Request) -> web.StreamResponse:
    item = request.match_info["item_id"]
    if not item.isdigit() or len(item) > 18:
        raise Problem(404, "No such discrepancy.")
    form = await form_of(request)
    try:
        async with pool_of(request).acquire() as conn:
            await actions.acknowledge_discrepancy(conn, _actor(request), int(item),
                                                  form.get("reason", ""))
    except ActionRefused as exc:
        raise Problem(400, f"{exc}; nothing was changed.") from exc
    except store.NotFound as exc:
        raise Problem(404, "No such discrepancy.") from exc
    except store.AlreadyResolved as exc:
        raise Problem(409, str(exc)) from exc
    return _back(_local(form.get("back"), "/reconciliation"), "acknowledged")


async def dispute_resolve(request: web.Request) -> web.StreamResponse:
    """An operator answers a customer's dispute (domain/disputes.py resolve: the same
    function, and the same journal row, as `python -m mpp_server disputes resolve`)."""
    dispute_id = request.match_info["dispute_id"]
    form = await form_of(request)
    resolution = form.get("resolution", "")
    if resolution not in (DisputeResolution.REJECTED, DisputeResolution.REFUNDED):
        raise Problem(400, "resolution must be REJECTED or REFUNDED; nothing was changed.")
    try:
        async with pool_of(request).acquire() as conn:
            await disputes.resolve(conn, dispute_id, DisputeResolution(resolution),
                                   form.get("note", "").strip(), _actor(request))
    except NotFound as exc:
        raise Problem(404, "No such dispute.") from exc
    except (InvalidState, ValidationFailed) as exc:
        raise Problem(409 if isinstance(exc, InvalidState) else 400,
                      f"{exc.message}; nothing was changed.") from exc
    return _back("/", "dispute_resolved")


async def webhook_replay(request: web.Request) -> web.StreamResponse:
    """Send a webhook again (webhooks/store.py replay, as `webhooks replay` does)."""
    event_id = request.match_info["event_id"]
    if not event_id.isdigit() or len(event_id) > 18:
        raise Problem(404, "No such webhook.")
    async with pool_of(request).acquire() as conn:
        outcome, _ = await webhook_store.replay(conn, int(event_id), _actor(request))
    if outcome in (WebhookReplayOutcome.UNKNOWN, WebhookReplayOutcome.EVENT_GONE):
        raise Problem(404, "No such webhook, or its event is no longer kept.")
    return _back("/", f"webhook_{outcome.value}")


def _local(back: str | None, default: str) -> str:
    """The page the form was on, when it is one of ours (a path, no query)."""
    return back if back and back.startswith("/") and not back.startswith("//") \
        and "?" not in back and len(back) <= 200 else default


async def notify_retry(request: web.Request) -> web.StreamResponse:
    return await _retry_now(request, actions.NOTIFY, "/payments/", "notify")


async def topup_check(request: web.Request) -> web.StreamResponse:
    return await _retry_now(request, actions.TOPUP_CHECK, "/topups/", "topup")


async def _retry_now(request: web.Request, retry: actions.Retry, page: str,
                     notice: str) -> web.StreamResponse:
    row_id = request.match_info[retry.key]
    async with pool_of(request).acquire() as conn:
        outcome = await actions.retry_now(conn, _actor(request), retry, row_id)
    if outcome is None:
        raise Problem(404, f"No {retry.what} has this id.")
    return _back(page + quote(row_id, safe=""), f"{notice}_{outcome.value}")


async def identification(request: web.Request) -> web.StreamResponse:
    customer_id = request.match_info["customer_id"]
    form = await form_of(request)
    level = form.get("level", "")
    if level not in Level.__members__ or not 1 <= len(customer_id) <= 12:
        raise Problem(400, "level must be NONE, SIMPLIFIED or FULL (and the "
                                        "customer id at most 12 characters); nothing was "
                                        "changed.")
    try:
        async with pool_of(request).acquire() as conn:
            await actions.set_identification(conn, _actor(request), customer_id,
                                             Level(level), form.get("reason", ""))
    except ActionRefused as exc:
        raise Problem(400, f"{exc}; nothing was changed.") from exc
    return _back(f"/customers/{quote(customer_id, safe='')}", "level_set")


@requires(Role.ADMIN)
async def operator_disable(request: web.Request) -> web.StreamResponse:
    return await _operator_action(request, actions.disable_operator, "operator_disabled")


@requires(Role.ADMIN)
async def operator_unlock(request: web.Request) -> web.StreamResponse:
    return await _operator_action(request, actions.unlock_operator, "operator_unlocked")


async def _operator_action(request: web.Request, action: actions.OperatorAction,
                           done: str) -> web.StreamResponse:
    login = request.match_info["login"]
    if login == session_of(request).login and action is actions.disable_operator:
        raise Problem(400, "An admin cannot disable their own login here "
                                        "(use the command line); nothing was changed.")
    try:
        async with pool_of(request).acquire() as conn:
            await action(conn, _actor(request), login)
    except OperatorError as exc:
        raise Problem(404, str(exc)) from exc
    return _back("/operators", done)
