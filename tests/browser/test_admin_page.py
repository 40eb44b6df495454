"""The account settings page, the administration page, quota refusals in the chat and
self sign-up, against a real server (accounts, ledger, quotas) and the fake upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, expect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.browser.admin_pages import (
    PASSWORD,
    TOKENS_REFUSAL,
    AccountSettings,
    Administration,
    add_users,
    http,
    number,
    signed_in,
    unique,
)
from tests.browser.chat_page import ChatPage
from tests.browser.conftest import new_context
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.wsclient import RawClient


@pytest.fixture
async def people(database_url: str) -> dict[str, str]:
    """An admin and a user, created before the server starts."""
    names = {"admin": unique("root"), "user": unique("ann")}
    await add_users(database_url, **{names["admin"]: "admin", names["user"]: "user"})
    return names


@pytest.fixture
async def secured(
    make_settings: SettingsFactory, people: dict[str, str]
) -> AsyncIterator[RunningServer]:
    """Users may spend 100,000 tokens a day; sign-up waits for approval."""
    settings = make_settings(
        role_limits={"user": {"tokens_per_day": 100_000}},
        self_signup="approval",
        credential_check_interval=0.2,
    )
    async with run_server(settings) as server:
        yield server


@pytest.fixture
async def second(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A second browser (another person's cookies)."""
    context = await new_context(browser, unique("browser"))
    try:
        yield context
    finally:
        await context.close()


async def test_settings_show_usage_and_quota_and_manage_tokens(
    context: BrowserContext, secured: RunningServer, people: dict[str, str]
) -> None:
    """A user's settings: today's replies, the remaining token quota with its reset, "no
    limit" for a limit not set; a token created there works until it is revoked there."""
    chat = await signed_in(context, secured, people["user"])
    await chat.send("count me [tokens=30]")
    await chat.wait_answer()
    settings = await AccountSettings.open(chat)
    await expect(settings.stat("today-replies")).to_have_text("1")
    tokens_today = number(await settings.stat("today-tokens").inner_text())
    assert tokens_today >= 30
    quota = settings.quota("tokens_per_day")
    await expect(quota.locator(".quota-value")).to_have_text(f"{tokens_today:,} of 100,000")
    await expect(quota.locator(".quota-remaining")).to_have_text(f"{100_000 - tokens_today:,} left")
    await expect(quota.locator(".quota-resets")).to_contain_text("00:00")
    await expect(settings.quota("messages_per_day").locator(".quota-value")).to_have_text(
        "No limit"
    )
    await expect(settings.root.locator("lt-usage-chart canvas")).to_have_count(1)

    secret = await settings.create_token("laptop")
    await settings.root.get_by_role("button", name="Copy").click()
    assert await chat.page.evaluate("navigator.clipboard.readText()") == secret
    await expect(settings.token_row("laptop")).to_have_attribute("data-revoked", "false")
    status, body = await http(secured, "GET", "/account/usage", token=secret)
    assert (status, body["user"]) == (200, people["user"])
    await settings.revoke_token("laptop")
    assert (await http(secured, "GET", "/account/usage", token=secret))[0] == 401

    await settings.close()
    await expect(chat.input).to_be_visible()
    await chat.assert_healthy()


async def test_only_an_admin_sees_the_administration_entry(
    context: BrowserContext,
    second: BrowserContext,
    secured: RunningServer,
    people: dict[str, str],
) -> None:
    """A user has the account settings but never the administration entry; an admin both."""
    user = await signed_in(context, secured, people["user"])
    await expect(user.page.locator('[data-action="account-settings"]')).to_be_visible()
    await expect(user.page.locator('[data-action="administration"]')).to_have_count(0)
    await user.page.reload()
    await user.wait_connected()
    await expect(user.page.locator('[data-action="administration"]')).to_have_count(0)
    admin = await signed_in(second, secured, people["admin"])
    await expect(admin.page.locator('[data-action="administration"]')).to_be_visible()
    await user.assert_healthy()
    await admin.assert_healthy()


async def test_admin_lists_creates_limits_and_revokes(
    context: BrowserContext, secured: RunningServer, people: dict[str, str]
) -> None:
    """The admin page lists the users, creates one, sets its own token limit, and revokes
    another user's API token (which stops working)."""
    accounts = secured.services.auth.accounts
    _, secret = await accounts.create_token(people["user"], "ci")
    chat = await signed_in(context, secured, people["admin"])
    admin = await Administration.open(chat)
    row = admin.user_row(people["user"])
    await expect(row).to_have_attribute("data-role", "user")
    await expect(row).to_have_attribute("data-status", "active")
    await expect(admin.user_row(people["admin"])).to_have_attribute("data-role", "admin")

    newcomer = unique("bo")
    await admin.create_user(newcomer, PASSWORD)
    await admin.edit_limits(newcomer, tokens_per_day=5000, messages_per_day=None)
    limits = admin.user_row(newcomer).locator('[data-cell="limits"]')
    await expect(limits.locator('[data-limit="tokens_per_day"]')).to_have_text(
        "Tokens per day: 5,000 (own)"
    )
    await expect(limits.locator('[data-limit="messages_per_day"]')).to_have_text(
        "Messages per day: No limit (own)"
    )
    assert (await accounts.user(newcomer)).limits == {
        "tokens_per_day": 5000,
        "messages_per_day": None,
    }

    assert (await http(secured, "GET", "/account/tokens", token=secret))[0] == 200
    await admin.revoke_token(people["user"], "ci")
    assert (await http(secured, "GET", "/account/tokens", token=secret))[0] == 401
    await chat.assert_healthy()


async def test_a_quota_refusal_says_so_and_keeps_the_message(
    context: BrowserContext, make_settings: SettingsFactory, people: dict[str, str]
) -> None:
    """Past the day's tokens the message box says so in the documented words (in English and
    in Chinese), and the refused message stays in the box."""
    async with run_server(make_settings(role_limits={"user": {"tokens_per_day": 5}})) as server:
        chat = await signed_in(context, server, people["user"])
        await chat.send("a few words to count")
        await chat.wait_answer()
        await chat.type_and_send("one more question")
        problem = chat.page.locator('.composer-problem[data-code="quota_exceeded"]')
        await expect(problem.locator(".problem-text")).to_have_text(TOKENS_REFUSAL)
        await expect(chat.input).to_have_value("one more question")
        await expect(chat.answers).to_have_count(1)
        await chat.page.locator('[data-control="language"]').first.select_option("zh-CN")
        await expect(problem.locator(".problem-text")).to_have_text(
            "已达到每日 token 配额，将于 UTC 00:00 重置"
        )
        await chat.assert_healthy()


async def test_sign_up_waits_for_an_admins_approval(
    context: BrowserContext,
    second: BrowserContext,
    secured: RunningServer,
    people: dict[str, str],
) -> None:
    """ "Create an account" makes a pending account; it signs in once an admin approves it."""
    newcomer = unique("cy")
    page = await context.new_page()
    await page.goto(secured.http_url + "/")
    await page.get_by_role("button", name="Create an account").click()
    await page.get_by_label("User name").fill(newcomer)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator(".sign-in-notice")).to_have_text(
        "Account created. An admin must approve it before you can sign in."
    )
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator(".sign-in-error")).to_have_text(
        "This account waits for an admin's approval."
    )

    admin = await Administration.open(await signed_in(second, secured, people["admin"]))
    row = admin.user_row(newcomer)
    await expect(row).to_have_attribute("data-status", "pending")
    await row.get_by_role("button", name="Approve").click()
    await expect(row).to_have_attribute("data-status", "active")

    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator(".connection")).to_have_attribute("data-status", "open")
    await expect(page.locator('[data-action="administration"]')).to_have_count(0)


async def test_an_admin_watches_limits_and_lifts_a_users_daily_tokens(
    context: BrowserContext,
    second: BrowserContext,
    secured: RunningServer,
    people: dict[str, str],
) -> None:
    """The whole story: an admin creates a user with 10,000 tokens a day and watches the
    usage rise while the user chats in another browser; the user is refused in the
    documented words; the admin lifts the limit and the user chats again; the admin revokes
    the user's API token and the socket it opened closes."""
    admin = await Administration.open(await signed_in(context, secured, people["admin"]))
    dana = unique("dana")
    await admin.create_user(dana, PASSWORD, tokens_per_day=10_000)
    await expect(
        admin.user_row(dana).locator('[data-cell="limits"] [data-limit="tokens_per_day"]')
    ).to_have_text("Tokens per day: 10,000 (own)")

    user = await signed_in(second, secured, dana)
    settings = await AccountSettings.open(user)
    secret = await settings.create_token("cli")
    await settings.close()
    socket = await token_socket(secured, secret)
    assert (await socket.recv())["type"] == "hello"

    await admin.tab("Usage")
    await admin.root.locator('[data-by="user"]').click()
    for text in ("first [tokens=6000]", "second [tokens=6000]"):
        await user.send(text)
        await expect(user.last_answer).to_have_attribute("data-status", "completed", timeout=30_000)
        used = await tokens_today(secured, secret)
        # The admin's table follows by itself (it refreshes every few seconds).
        await expect(admin.usage_cell(dana)).to_have_text(f"{used:,}")
    assert used > 10_000

    await user.type_and_send("third, please")
    refusal = user.page.locator('.composer-problem[data-code="quota_exceeded"] .problem-text')
    await expect(refusal).to_have_text(TOKENS_REFUSAL)
    await expect(user.input).to_have_value("third, please")

    await admin.tab("Users")
    await admin.edit_limits(dana, tokens_per_day=None)
    await user.input.press("Enter")
    await expect(user.answers).to_have_count(3)
    await user.wait_answer()
    await expect(refusal).to_have_count(0)

    await admin.revoke_token(dana, "cli")
    await closes_signed_out(socket)
    await admin.tab("Audit log")
    await expect(admin.root.locator('.audit-list tr[data-action="token.revoke"]')).to_have_count(1)
    await user.assert_healthy()


async def tokens_today(server: RunningServer, token: str) -> int:
    """The account's tokens today, as its own usage route counts them."""
    status, usage = await http(server, "GET", "/account/usage?days=1", token=token)
    assert status == 200, usage
    return sum(day["input_tokens"] + day["output_tokens"] for day in usage["days"])


async def token_socket(server: RunningServer, token: str) -> RawClient:
    """A WebSocket that authenticates with an API token (as the terminal client does)."""
    headers = {"Authorization": f"Bearer {token}"}
    return RawClient(await connect(server.ws_url, additional_headers=headers, compression=None))


async def closes_signed_out(socket: RawClient) -> None:
    """The server closes the socket with 1008 (the frames it got before are read past)."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(read_all(socket), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008


async def read_all(socket: RawClient) -> None:
    """Read frames until the socket closes (ConnectionClosed)."""
    while True:
        await socket.connection.recv()


async def test_admin_cancels_a_live_reply_and_sees_the_providers(
    context: BrowserContext,
    second: BrowserContext,
    secured: RunningServer,
    people: dict[str, str],
) -> None:
    """Live replies lists the answer being written (refreshed by itself); Cancel stops it
    in the user's page. Providers shows the provider it used, healthy."""
    admin = await Administration.open(await signed_in(context, secured, people["admin"]))
    await admin.tab("Live replies")
    await expect(admin.root.get_by_text("No answer is being written right now.")).to_be_visible()
    user = await signed_in(second, secured, people["user"])
    await user.send("a long one [tokens=400] [delay=50]")
    row = admin.root.locator(".reply-list tbody tr").filter(has_text=people["user"])
    await expect(row).to_contain_text("qwen-plus")
    await row.get_by_role("button", name="Cancel").click()
    await admin.page.locator("dialog.confirm[open] [data-action='confirm']").click()
    await expect(admin.outcome).to_have_text("Cancelled.")
    await user.wait_answer("cancelled")
    await expect(row).to_have_count(0)

    await admin.tab("Providers")
    provider = admin.root.locator(".provider-list tbody tr").first
    await expect(provider).to_have_attribute("data-breaker", "closed")
    await expect(provider.locator(".badge")).to_have_text("Closed (healthy)")
    await user.assert_healthy()


async def test_the_audit_log_pages_to_older_entries(
    context: BrowserContext, secured: RunningServer, people: dict[str, str]
) -> None:
    """The audit log shows the newest 50 first; "Older entries" adds the rest, then goes."""
    for index in range(55):
        await secured.services.audit.record("cli", "user.limits", f"someone-{index}")
    admin = await Administration.open(await signed_in(context, secured, people["admin"]))
    await admin.tab("Audit log")
    rows = admin.root.locator(".audit-list tbody tr")
    await expect(rows).to_have_count(50)
    await expect(rows.first).to_contain_text("someone-54")
    await admin.root.get_by_role("button", name="Older entries").click()
    await expect(rows).to_have_count(55)
    await expect(rows.last).to_contain_text("someone-0")
    await expect(admin.root.get_by_role("button", name="Older entries")).to_have_count(0)


async def test_a_model_the_role_may_not_use_says_so(
    context: BrowserContext, make_settings: SettingsFactory, people: dict[str, str]
) -> None:
    """A message to a model the account's role may not use is refused in plain words, and
    stays in the box."""
    settings = make_settings(role_models={"user": ["qwen-max"]})
    async with run_server(settings) as server:
        chat = await signed_in(context, server, people["user"])
        await chat.type_and_send("hello there")
        problem = chat.page.locator('.composer-problem[data-code="model_not_allowed"]')
        await expect(problem.locator(".problem-text")).to_have_text(
            "Your account may not use qwen-plus."
        )
        await expect(problem.get_by_role("button", name="Choose another model")).to_be_visible()
        await expect(chat.input).to_have_value("hello there")
        await chat.assert_healthy()


async def test_admin_changes_a_role_resets_a_password_and_disables(
    context: BrowserContext,
    second: BrowserContext,
    secured: RunningServer,
    people: dict[str, str],
) -> None:
    """From the users' table: a role changes, a new password works (the old one no longer),
    and disabling signs the account's open page out; enabling lets it back in."""
    accounts = secured.services.auth.accounts
    admin = await Administration.open(await signed_in(context, secured, people["admin"]))
    name = people["user"]
    row = admin.user_row(name)
    await row.get_by_label(f"Role of {name}").select_option("admin")
    await expect(row).to_have_attribute("data-role", "admin")
    await row.get_by_label(f"Role of {name}").select_option("user")
    await expect(row).to_have_attribute("data-role", "user")
    # An admin's own row cannot demote or disable itself.
    own = admin.user_row(people["admin"])
    await expect(own.get_by_label(f"Role of {people['admin']}")).to_be_disabled()
    await expect(own.get_by_role("button", name="Disable")).to_be_disabled()

    await row.get_by_role("button", name=f"Reset the password of {name}").click()
    dialog = admin.page.locator("dialog.admin-dialog[open]")
    await dialog.get_by_label("New password").fill("another long secret")
    await dialog.get_by_role("button", name="Save").click()
    await expect(admin.outcome).to_have_text(f"Password of {name} reset.")
    assert await accounts.verify_password(name, "another long secret")
    assert not await accounts.verify_password(name, PASSWORD)

    user = await ChatPage.open(second, secured, connect=False)
    await user.sign_in(name, "another long secret")
    await user.wait_connected()
    await row.get_by_role("button", name="Disable").click()
    await admin.page.locator("dialog.confirm[open] [data-action='confirm']").click()
    await expect(row).to_have_attribute("data-status", "disabled")
    await expect(user.signed_out_notice).to_be_visible()
    await row.get_by_role("button", name="Enable").click()
    await expect(row).to_have_attribute("data-status", "active")
    await user.sign_in(name, "another long secret")
    await user.wait_connected()
    await user.assert_healthy()
