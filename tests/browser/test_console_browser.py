"""Issue 24: the operators' console in a real browser: Debian's Chromium driven by
Playwright (nothing downloaded: the system's executable), against the real server and
simulator. An operator signs in, finds a payment by its mppPaymentId, reads its ledger
lines and Kaspi's answer, acknowledges a discrepancy and signs out; a viewer sees no
acknowledge button and is refused when the browser posts one anyway."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from mpp_server.console.operators import Role
from tests.support import helpers
from tests.support.console import add_operator, console_stack, console_url, open_discrepancy
from tests.support.stack import Stack

__all__ = ["console_stack"]  # the fixture this module uses
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # As root Chromium needs --no-sandbox (docs: shared/notes on browser tests).
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture
async def context(chromium: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile per test (its own cookies)."""
    made = await chromium.new_context(viewport={"width": 1400, "height": 900})
    made.set_default_timeout(TIMEOUT_MS)
    yield made
    await made.close()


async def sign_in(page: Page, stack: Stack, login: str, password: str) -> None:
    await page.goto(console_url(stack) + "/")
    await expect(page).to_have_url(console_url(stack) + "/login?next=/")
    await page.get_by_label("Login").fill(login)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(console_url(stack) + "/")
    await expect(page.locator(".me .who")).to_have_text(login)


async def resolved_by(stack: Stack, item_id: int) -> str | None:
    async with stack.pool.acquire() as conn:
        who: str | None = await conn.fetchval(
            "SELECT resolved_by FROM reconciliation_discrepancies WHERE id = $1", item_id)
    return who


async def test_operator_finds_a_payment_acknowledges_a_discrepancy_and_signs_out(
        console_stack: Stack, context: BrowserContext, tmp_path: Path) -> None:
    item_id, payment_id = await open_discrepancy(console_stack, tmp_path)
    paid = await helpers.payment(console_stack, payment_id)
    login, password = await add_operator(console_stack.pool, Role.OPERATOR)
    page = await context.new_page()
    await sign_in(page, console_stack, login, password)

    # Find the payment by our mppPaymentId, from the search box on every page.
    await page.get_by_role("searchbox").fill(paid["mppPaymentId"])
    await page.get_by_role("searchbox").press("Enter")
    await expect(page).to_have_url(f"{console_url(console_stack)}/payments/{payment_id}")
    await expect(page.locator("h1")).to_contain_text(payment_id)
    await expect(page.locator("h1 .badge")).to_have_text("COMPLETED")
    # Its ledger line: the debit of 120.00 and the customer's balance after it (0.00:
    # the deposit was exactly the payment).
    debit = page.locator("table.timeline tr", has_text="Ledger: payment")
    await expect(debit.locator("td").nth(3)).to_have_text("-120.00")
    await expect(debit.locator("td").nth(4)).to_have_text("0.00")
    # Kaspi's answer to the notifyPayment.
    answer = page.locator("#notify table tbody tr")
    await expect(answer.locator("code.answer")).to_have_text("SUCCESS")

    # The reconciliation page: acknowledge the payment's discrepancy with a reason.
    await page.locator("header nav").get_by_role("link", name="Reconciliation").click()
    row = page.locator(f"#item-{item_id}")
    await expect(row).to_contain_text("not_in_registry")
    await row.get_by_label(f"Reason for discrepancy {item_id}").fill(
        "Kaspi confirmed by mail: the row comes in tomorrow's file")
    await row.get_by_role("button", name="Acknowledge").click()
    await expect(page.locator(".notice")).to_have_text("The discrepancy is acknowledged.")
    await expect(page.locator(f"#item-{item_id}")).to_have_count(0)  # no longer open
    assert await resolved_by(console_stack, item_id) == login
    # The payment's life now says who acknowledged it.
    await page.get_by_role("searchbox").fill(payment_id)
    await page.get_by_role("searchbox").press("Enter")
    await expect(page.locator("table.timeline")).to_contain_text(f"acknowledged by {login}")

    # Sign out: back at the sign-in page, and the pages are closed again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(console_url(console_stack) + "/login?signed_out=1")
    await expect(page.locator(".notice")).to_have_text("You have signed out.")
    await page.goto(console_url(console_stack) + "/reconciliation")
    await expect(page).to_have_url(console_url(console_stack) + "/login?next=/reconciliation")


async def test_a_viewers_acknowledge_is_refused(
        console_stack: Stack, context: BrowserContext, tmp_path: Path) -> None:
    item_id, _ = await open_discrepancy(console_stack, tmp_path)
    login, password = await add_operator(console_stack.pool, Role.VIEWER)
    page = await context.new_page()
    await sign_in(page, console_stack, login, password)
    await page.locator("header nav").get_by_role("link", name="Reconciliation").click()
    row = page.locator(f"#item-{item_id}")
    await expect(row).to_contain_text("open")
    await expect(row.get_by_role("button", name="Acknowledge")).to_have_count(0)

    # The browser posts the form anyway, with this session's own CSRF token.
    token = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    answer = await page.request.post(
        f"{console_url(console_stack)}/reconciliation/discrepancies/{item_id}/acknowledge",
        form={"reason": "a viewer tries", "csrf_token": token})
    assert answer.status == 403
    assert "Your role (viewer) may not do this" in await answer.text()
    assert await resolved_by(console_stack, item_id) is None
    await page.reload()
    await expect(page.locator(f"#item-{item_id}")).to_contain_text("open")
