"""Accounts in the page: the sign-in screen, signing out, and sessions that end elsewhere."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, Route, WebSocketRoute, expect

from liaotian.auth import SESSION_COOKIE
from liaotian.store import create_engine
from liaotian.store.accounts import SESSION, Accounts
from liaotian.store.migrate import upgrade
from tests.browser.chat_page import ChatPage
from tests.conftest import SettingsFactory
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer, run_server

PASSWORD = "correct horse battery"
SIGNED_OUT = "You were signed out. Sign in again to continue."


@pytest.fixture
async def user(database_url: str) -> str:
    """A user created before the server starts (so signing in is required).

    The name is new for every test: sign-in attempts are rate limited per name, per process.
    """
    name = f"alice-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        await Accounts(engine).add_user(name, PASSWORD)
    finally:
        await engine.dispose()
    return name


@pytest.fixture
async def secured(make_settings: SettingsFactory, user: str) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings(credential_check_interval=0.2)) as server:
        yield server


@pytest.fixture
async def signed_out(context: BrowserContext, secured: RunningServer) -> AsyncIterator[ChatPage]:
    """The page at /, showing the sign-in screen; at the end, no script error or CSP violation."""
    chat = await ChatPage.open(context, secured, connect=False)
    await expect(chat.sign_in_heading).to_be_visible()
    yield chat
    await chat.assert_healthy()


@pytest.fixture
async def signed_in(signed_out: ChatPage, user: str) -> ChatPage:
    await signed_out.sign_in(user, PASSWORD)
    await signed_out.wait_connected()
    return signed_out


async def revoke_session(context: BrowserContext, server: RunningServer) -> None:
    """Revoke the browser's session in the database, as an administrator would elsewhere."""
    (secret,) = [c["value"] for c in await context.cookies() if c["name"] == SESSION_COOKIE]
    accounts = server.services.auth.accounts
    identity = await accounts.identify(secret, SESSION)
    assert identity is not None
    await accounts.revoke(identity.credential_id)


async def test_a_wrong_password_says_so_on_the_sign_in_screen(
    signed_out: ChatPage, user: str
) -> None:
    """Without a session the page shows only the sign-in screen; a wrong password says so."""
    await expect(signed_out.page.locator("lt-app")).to_have_count(0)
    await expect(signed_out.signed_out_notice).to_have_count(0)
    await signed_out.sign_in(user, "not the password")
    await expect(signed_out.sign_in_error).to_have_text("Wrong user name or password.")
    await expect(signed_out.sign_in_screen.get_by_label("Password")).to_be_focused()
    await expect(signed_out.page.locator("lt-app")).to_have_count(0)


async def test_too_many_attempts_ask_to_wait_a_minute(
    context: BrowserContext, make_settings: SettingsFactory, user: str
) -> None:
    """Past the server's sign-in attempts per minute, the screen says to wait a minute."""
    settings = make_settings(login_attempts_per_minute=1)
    async with run_server(settings) as server:
        chat = await ChatPage.open(context, server, connect=False)
        await chat.sign_in(user, "not the password")
        await expect(chat.sign_in_error).to_have_text("Wrong user name or password.")
        await chat.sign_in(user, PASSWORD)
        await expect(chat.sign_in_error).to_have_text(
            "Too many attempts. Wait a minute, then try again."
        )
        await chat.assert_healthy()


async def test_other_sign_in_failures_name_the_problem(signed_out: ChatPage, user: str) -> None:
    """A failure that is neither a wrong password nor too many attempts says what it was."""

    async def broken(route: Route) -> None:
        await route.fulfill(status=500, body="oops")

    await signed_out.page.route("**/auth/login", broken)
    await signed_out.sign_in(user, PASSWORD)
    await expect(signed_out.sign_in_error).to_contain_text("Could not sign in (http_500).")


async def test_signed_in_the_page_chats_as_the_user(
    signed_in: ChatPage, secured: RunningServer, user: str
) -> None:
    """After signing in, answers stream as usual, the sidebar shows the user's name."""
    await expect(signed_in.account).to_have_text(f"Signed in as {user}")
    await expect(signed_in.sign_in_screen).to_have_count(0)
    await signed_in.send("hello [tokens=30] [delay=10]")
    await expect(signed_in.stop_button).to_be_visible()
    answer = await signed_in.wait_answer()
    await expect(answer.locator("lt-markdown")).to_have_text(
        expected_reply("hello [tokens=30] [delay=10]").strip()
    )
    conversations, _ = await secured.services.store.list_conversations(
        await secured.services.auth.accounts.owner(user), limit=5
    )
    assert [c.id for c in conversations] == [signed_in.conversation_id()]


async def test_the_page_never_holds_the_credential(
    signed_in: ChatPage, context: BrowserContext
) -> None:
    """The session is an HttpOnly, SameSite=Strict cookie: not readable, not in localStorage."""
    (cookie,) = [c for c in await context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert await signed_in.page.evaluate("document.cookie") == ""
    stored = await signed_in.page.evaluate("JSON.stringify({...localStorage, ...sessionStorage})")
    assert cookie["value"] not in stored
    assert "password" not in stored.lower()
    assert PASSWORD not in stored


async def test_signing_out_closes_the_socket_and_shows_the_sign_in_screen(
    context: BrowserContext, secured: RunningServer, user: str
) -> None:
    """Sign out ends the session on the server, closes the socket, and shows the sign-in screen."""
    chat = await ChatPage.open(context, secured, connect=False)
    async with chat.page.expect_websocket() as opened:
        await chat.sign_in(user, PASSWORD)
    socket = await opened.value
    await chat.wait_connected()
    async with socket.expect_event("close"):
        await chat.sign_out()
    await expect(chat.sign_in_heading).to_be_visible()
    await expect(chat.signed_out_notice).to_have_count(0)
    await expect(chat.page.locator("lt-app")).to_have_count(0)
    await chat.page.reload()
    await expect(chat.sign_in_heading).to_be_visible()
    await chat.assert_healthy()


async def test_signing_out_in_one_tab_signs_out_the_others(
    signed_in: ChatPage, context: BrowserContext, secured: RunningServer
) -> None:
    """A tab of the same session is closed by the server and says the user was signed out."""
    other = await ChatPage.open(context, secured)
    await other.sign_out()
    await expect(other.sign_in_heading).to_be_visible()
    await expect(signed_in.signed_out_notice).to_have_text(SIGNED_OUT)
    await expect(signed_in.page.locator("lt-app")).to_have_count(0)
    await other.assert_healthy()


async def test_a_session_revoked_elsewhere_brings_back_the_sign_in_screen(
    signed_in: ChatPage, context: BrowserContext, secured: RunningServer, user: str
) -> None:
    """A revoked session's socket is closed (1008); the page says so and can sign in again."""
    await revoke_session(context, secured)
    await expect(signed_in.signed_out_notice).to_have_text(SIGNED_OUT)
    await expect(signed_in.sign_in_screen.get_by_label("User name")).to_have_value(user)
    await signed_in.sign_in(user, PASSWORD)
    await signed_in.wait_connected()
    await expect(signed_in.account).to_contain_text(user)


async def test_a_refused_reconnect_asks_to_sign_in_again(
    context: BrowserContext, secured: RunningServer, user: str
) -> None:
    """A drop, then a reconnect refused because the session ended meanwhile: sign in again."""

    def drop_instead_of_closing(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()

        async def dropped(code: int | None, reason: str | None) -> None:
            await page_side.close(code=4002, reason="dropped by the test")

        # The page never hears the server's "signed out": only that the connection dropped.
        server_side.on_close(dropped)

    page = await context.new_page()
    await page.route_web_socket(re.compile(r"/ws$"), drop_instead_of_closing)
    chat = await ChatPage.load(page, secured, connect=False)
    await chat.sign_in(user, PASSWORD)
    await chat.wait_connected()
    async with page.expect_response(lambda response: response.url.endswith("/auth/me")):
        await revoke_session(context, secured)
    await expect(chat.signed_out_notice).to_have_text(SIGNED_OUT)
    await chat.assert_healthy()


async def test_an_open_server_shows_no_sign_in_screen(chat: ChatPage) -> None:
    """Without users on a loopback address the page connects with its client id, no sign-in."""
    await expect(chat.sign_in_screen).to_have_count(0)
    await expect(chat.account).to_have_count(0)
    await expect(chat.page.locator('[data-action="sign-out"]')).to_have_count(0)
