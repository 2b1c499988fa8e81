"""Issue 24: the operators' console's security rules, over HTTP against the real server
(its console listener) and a real PostgreSQL: sign-in and sessions, CSRF, roles, the
lockout, session expiry, escaping, headers, and that nothing is written when a request
is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from mpp_server.console import app as console_app
from mpp_server.console import sessions
from mpp_server.console.operators import Role
from mpp_server.console.web import CONTENT_SECURITY_POLICY
from tests.support import helpers
from tests.support.console import (
    Browser,
    add_operator,
    browsers,
    console_stack,
    console_url,
    journal_since,
    last_journal_id,
    open_discrepancy,
)
from tests.support.stack import Stack

__all__ = ["browsers", "console_stack"]  # the fixtures this module uses


async def discrepancy_state(stack: Stack, item_id: int) -> tuple[bool, str | None]:
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT resolved, resolved_by FROM reconciliation_discrepancies WHERE id = $1",
            item_id)
    assert row is not None
    return row["resolved"], row["resolved_by"]


async def signed_in(browser: Browser, stack: Stack, role: Role) -> str:
    login, password = await add_operator(stack.pool, role)
    page = await browser.sign_in(login, password)
    assert page.status == 200 and page.url.endswith("/"), page.text[:300]
    return login


# ---- no session ------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/search?q=1", "/payments/x", "/customers/x",
                                  "/topups/x", "/reconciliation", "/audit", "/operators"])
async def test_every_page_without_a_session_redirects_to_login(
        console_stack: Stack, browsers: list[Browser], path: str) -> None:
    page = await browsers[0].get(path, follow=False)
    assert page.status == 303
    async with browsers[0].http.get(console_url(console_stack) + path,
                                    allow_redirects=False) as resp:
        assert resp.headers["Location"].startswith("/login")
    landed = await browsers[0].get(path)
    assert landed.url.startswith(console_url(console_stack) + "/login")
    assert 'name="password"' in landed.text


async def test_a_post_without_a_session_changes_nothing(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    before = await last_journal_id(console_stack.pool)
    page = await browsers[0].post(f"/reconciliation/discrepancies/{item_id}/acknowledge",
                                  {"reason": "no session", "csrf_token": "x" * 43},
                                  follow=False)
    assert page.status == 303
    assert await discrepancy_state(console_stack, item_id) == (False, None)
    assert await journal_since(console_stack.pool, before) == []


# ---- sign-in, sign-out, the cookie -----------------------------------------------------

async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
        console_stack: Stack, browsers: list[Browser]) -> None:
    login, password = await add_operator(console_stack.pool, Role.VIEWER)
    before = await last_journal_id(console_stack.pool)
    async with browsers[0].http.post(console_url(console_stack) + "/login",
                                     data={"login": login, "password": password},
                                     allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/"
        set_cookie = resp.headers["Set-Cookie"]
    assert set_cookie.startswith("mpp_console_session=")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP on a loopback, no ADMIN_PUBLIC_URL
    home = await browsers[0].get("/")
    assert home.status == 200 and login in home.text
    stolen = browsers[0].cookie()

    out = await browsers[0].post("/logout", {"csrf_token": home.csrf_token})
    assert out.url.endswith("/login?signed_out=1") and "You have signed out" in out.text
    # The old cookie is dead on the server, not only forgotten by the browser.
    browsers[1].http.cookie_jar.update_cookies({"mpp_console_session": stolen})
    assert (await browsers[1].get("/", follow=False)).status == 303
    rows = await journal_since(console_stack.pool, before)
    assert [(r["action"], r["actor"], r["via"]) for r in rows] == [
        ("sign_in", login, "console"), ("sign_out", login, "console")]


async def test_wrong_password_and_unknown_login_are_refused_alike_and_journaled(
        console_stack: Stack, browsers: list[Browser]) -> None:
    login, _ = await add_operator(console_stack.pool, Role.OPERATOR)
    before = await last_journal_id(console_stack.pool)
    wrong = await browsers[0].sign_in(login, "not the password")
    unknown = await browsers[0].sign_in("nobody-" + login, "not the password")
    for page in (wrong, unknown):
        assert page.status == 401 and "Wrong login or password." in page.text
    assert browsers[0].cookie() == ""
    rows = await journal_since(console_stack.pool, before)
    assert [(r["action"], r["actor"], r["details"]["reason"]) for r in rows] == [
        ("sign_in_failed", login, "wrong_password"),
        ("sign_in_failed", "nobody-" + login, "unknown_login")]


async def test_five_failures_lock_the_login_for_fifteen_minutes(
        console_stack: Stack, browsers: list[Browser]) -> None:
    login, password = await add_operator(console_stack.pool, Role.OPERATOR)
    before = await last_journal_id(console_stack.pool)
    statuses = [(await browsers[0].sign_in(login, f"wrong {n}")).status for n in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    # Locked: even the right password is refused, and nothing is signed in.
    locked = await browsers[0].sign_in(login, password)
    assert locked.status == 429 and "locked after 5 failed sign-ins" in locked.text
    assert browsers[0].cookie() == ""
    async with console_stack.pool.acquire() as conn:
        minutes = await conn.fetchval(
            "SELECT extract(epoch FROM locked_until - now()) / 60 FROM operators "
            "WHERE login = $1", login)
    assert 14 < minutes <= 15
    rows = await journal_since(console_stack.pool, before)
    assert [r["details"].get("failures") for r in rows] == [1, 2, 3, 4, 5, None]
    assert [r["details"]["reason"] for r in rows][-1] == "locked"

    # Fifteen minutes later (the clock moved by the test): the right password works.
    async with console_stack.pool.acquire() as conn:
        await conn.execute("UPDATE operators SET locked_until = now() - interval '1 second' "
                           "WHERE login = $1", login)
    assert (await browsers[0].sign_in(login, password)).status == 200
    assert browsers[0].cookie() != ""


async def test_an_idle_session_expires_after_fifteen_minutes(
        console_stack: Stack, browsers: list[Browser]) -> None:
    await signed_in(browsers[0], console_stack, Role.VIEWER)
    digest = sessions.token_hash(browsers[0].cookie())

    async def idle_for(minutes: int) -> None:
        async with console_stack.pool.acquire() as conn:
            await conn.execute(
                "UPDATE console_sessions SET last_seen_at = now() - make_interval(mins => $2)"
                " WHERE token_sha256 = $1", digest, minutes)

    await idle_for(14)
    assert (await browsers[0].get("/")).status == 200  # and the clock starts again
    await idle_for(16)
    page = await browsers[0].get("/audit")
    assert page.url.endswith("/login?next=/audit&expired=1")
    assert "Your session ended after 15 minutes without activity" in page.text
    async with console_stack.pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM console_sessions WHERE token_sha256 = $1", digest) == 0


async def test_a_session_ends_after_twelve_hours_however_active(
        console_stack: Stack, browsers: list[Browser]) -> None:
    await signed_in(browsers[0], console_stack, Role.VIEWER)
    async with console_stack.pool.acquire() as conn:
        await conn.execute(
            "UPDATE console_sessions SET created_at = now() - interval '12 hours 1 minute' "
            "WHERE token_sha256 = $1", sessions.token_hash(browsers[0].cookie()))
    assert (await browsers[0].get("/")).url.endswith("expired=1")


async def test_after_sign_in_the_operator_lands_where_they_were_going_and_only_here(
        console_stack: Stack, browsers: list[Browser]) -> None:
    login, password = await add_operator(console_stack.pool, Role.VIEWER)
    for target, lands in (("/audit", "/audit"), ("//evil.example/x", "/"),
                          ("https://evil.example/", "/")):
        page = await browsers[0].post("/login", {"login": login, "password": password,
                                                 "next": target})
        assert page.url == console_url(console_stack) + lands


# ---- CSRF ------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "", "forged-" + "x" * 40])
async def test_a_form_without_the_sessions_csrf_token_is_403_and_changes_nothing(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path,
        token: str | None) -> None:
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    await signed_in(browsers[0], console_stack, Role.OPERATOR)
    before = await last_journal_id(console_stack.pool)
    form = {"reason": "checked"} | ({} if token is None else {"csrf_token": token})
    page = await browsers[0].post(f"/reconciliation/discrepancies/{item_id}/acknowledge",
                                  form)
    assert page.status == 403 and "security token" in page.text
    assert await discrepancy_state(console_stack, item_id) == (False, None)
    assert await journal_since(console_stack.pool, before) == []


async def test_a_cookie_from_another_login_cannot_act(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    """Operator A's cookie with operator B's token (B's page, A's browser): refused."""
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    await signed_in(browsers[0], console_stack, Role.OPERATOR)
    await signed_in(browsers[1], console_stack, Role.OPERATOR)
    token_of_b = (await browsers[1].get("/reconciliation")).csrf_token
    before = await last_journal_id(console_stack.pool)
    page = await browsers[0].post(f"/reconciliation/discrepancies/{item_id}/acknowledge",
                                  {"reason": "with B's token", "csrf_token": token_of_b})
    assert page.status == 403
    assert await discrepancy_state(console_stack, item_id) == (False, None)
    assert await journal_since(console_stack.pool, before) == []


async def test_a_form_posted_from_another_origin_is_refused(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    await signed_in(browsers[0], console_stack, Role.OPERATOR)
    token = (await browsers[0].get("/reconciliation")).csrf_token
    page = await browsers[0].post(f"/reconciliation/discrepancies/{item_id}/acknowledge",
                                  {"reason": "x", "csrf_token": token},
                                  headers={"Origin": "https://evil.example"})
    assert page.status == 403
    assert await discrepancy_state(console_stack, item_id) == (False, None)


# ---- roles -----------------------------------------------------------------------------

async def test_a_viewer_may_look_but_not_act(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    item_id, payment_id = await open_discrepancy(console_stack, tmp_path)
    await signed_in(browsers[0], console_stack, Role.VIEWER)
    page = await browsers[0].get("/reconciliation")
    assert page.status == 200 and f"item-{item_id}" in page.text
    assert "Acknowledge</button>" not in page.text  # no form offered to a viewer
    before = await last_journal_id(console_stack.pool)
    for path, form in ((f"/reconciliation/discrepancies/{item_id}/acknowledge",
                        {"reason": "viewer"}),
                       (f"/payments/{payment_id}/notify-retry", {}),
                       (f"/customers/{helpers.new_customer()}/identification",
                        {"level": "FULL"}),
                       ("/operators/anyone/disable", {})):
        refused = await browsers[0].post(path, {**form, "csrf_token": page.csrf_token})
        assert refused.status == 403, path
        assert "Your role (viewer) may not do this" in refused.text
    assert await discrepancy_state(console_stack, item_id) == (False, None)
    assert await journal_since(console_stack.pool, before) == []
    assert (await browsers[0].get("/operators")).status == 403  # admins only


async def test_an_operator_acts_and_each_action_is_one_journal_row(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    login = await signed_in(browsers[0], console_stack, Role.OPERATOR)
    token = (await browsers[0].get("/reconciliation")).csrf_token
    before = await last_journal_id(console_stack.pool)
    page = await browsers[0].post(f"/reconciliation/discrepancies/{item_id}/acknowledge",
                                  {"reason": "Kaspi ticket 4711", "csrf_token": token})
    assert page.status == 200 and page.url.endswith("/reconciliation?done=acknowledged")
    assert "The discrepancy is acknowledged." in page.text
    assert await discrepancy_state(console_stack, item_id) == (True, login)
    [row] = await journal_since(console_stack.pool, before)
    assert (row["actor"], row["action"], row["subject"]) == (
        login, "discrepancy_acknowledged", f"discrepancy:{item_id}")
    assert row["details"]["reason"] == "Kaspi ticket 4711"
    # Again: it is resolved already (409), and no second row.
    again = await browsers[0].post(f"/reconciliation/discrepancies/{item_id}/acknowledge",
                                   {"reason": "again", "csrf_token": token})
    assert again.status == 409 and "was resolved at" in again.text
    assert len(await journal_since(console_stack.pool, before)) == 1


async def test_a_disabled_operators_cookie_stops_working_at_once(
        console_stack: Stack, browsers: list[Browser]) -> None:
    victim = await signed_in(browsers[0], console_stack, Role.OPERATOR)
    await signed_in(browsers[1], console_stack, Role.ADMIN)
    token = (await browsers[1].get("/operators")).csrf_token
    page = await browsers[1].post(f"/operators/{victim}/disable", {"csrf_token": token})
    assert page.url.endswith("/operators?done=operator_disabled")
    assert (await browsers[0].get("/", follow=False)).status == 303
    # Nor can the password sign in again.
    assert (await browsers[2].sign_in(victim, "whatever it was")).status == 401


# ---- what pages show -------------------------------------------------------------------

async def test_html_in_stored_fields_is_shown_escaped(
        console_stack: Stack, browsers: list[Browser], tmp_path: Path) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    customer = helpers.new_customer()
    await helpers.deposit(console_stack, customer, "100.00")
    qr = await helpers.new_qr(console_stack, "Dynamic", amount="10.00", merchantName=evil)
    scanned = await helpers.scan(console_stack, qr["qrCode"], customer)
    payment_id = scanned["payment"]["paymentId"]
    status, _ = await helpers.confirm(console_stack, payment_id, customer)
    assert status == 200
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    login = await signed_in(browsers[0], console_stack, Role.OPERATOR)
    token = (await browsers[0].get("/reconciliation")).csrf_token
    await browsers[0].post(f"/reconciliation/discrepancies/{item_id}/acknowledge",
                           {"reason": evil, "csrf_token": token})

    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    for path in (f"/payments/{payment_id}", f"/customers/{customer}",
                 f"/reconciliation/runs/{await run_of(console_stack, item_id)}",
                 f"/audit?operator={login}"):
        page = await browsers[0].get(path)
        assert page.status == 200, path
        assert escaped in page.text, path
        assert "<script>" not in page.text and "<img src=x" not in page.text, path


async def run_of(stack: Stack, item_id: int) -> int:
    async with stack.pool.acquire() as conn:
        run_id: int = await conn.fetchval(
            "SELECT run_id FROM reconciliation_discrepancies WHERE id = $1", item_id)
    return run_id


OUTSIDE_ASSET = re.compile(r"<(?:script|link|img|iframe|style)\b[^>]*\b(?:src|href)=\"(?!/)", re.I)


async def test_every_answer_carries_a_strict_policy_and_no_outside_asset(
        console_stack: Stack, browsers: list[Browser]) -> None:
    await signed_in(browsers[0], console_stack, Role.ADMIN)
    for path in ("/login", "/", "/operators", "/no-such-page", "/static/console.css"):
        async with browsers[0].http.get(console_url(console_stack) + path) as resp:
            assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            body = await resp.text()
        # Every asset a page loads is one of ours (a path, never another address).
        assert OUTSIDE_ASSET.search(body) is None, path
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src" not in CONTENT_SECURITY_POLICY  # no script at all


async def test_the_console_is_not_served_on_the_other_listeners(
        console_stack: Stack, browsers: list[Browser]) -> None:
    for base in (console_stack.wallet_url, console_stack.kaspi_url,
                 console_stack.acquiring_url):
        async with browsers[0].http.get(base + "/login", allow_redirects=False) as resp:
            assert resp.status in (401, 403, 404), base
            assert 'name="password"' not in await resp.text()


async def test_behind_the_banks_tls_proxy_the_cookie_is_secure(
        console_stack: Stack, browsers: list[Browser]) -> None:
    """ADMIN_PUBLIC_URL https://...: the browser reaches the console over TLS (the proxy
    terminates it), so the cookie is Secure, and forms from that address are ours."""
    public = "https://console.bank.example"
    settings = console_stack.runtime.settings.model_copy(update={"admin_public_url": public})
    runner = web.AppRunner(console_app.create_app(console_stack.pool, settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    login, password = await add_operator(console_stack.pool, Role.VIEWER)
    try:
        async with browsers[0].http.post(url + "/login", allow_redirects=False,
                                         data={"login": login, "password": password},
                                         headers={"Origin": public}) as resp:
            assert resp.status == 303
            assert "Secure" in resp.headers["Set-Cookie"]
        async with browsers[1].http.post(url + "/login", allow_redirects=False,
                                         data={"login": login, "password": password},
                                         headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403 and "Set-Cookie" not in resp.headers
    finally:
        await runner.cleanup()
