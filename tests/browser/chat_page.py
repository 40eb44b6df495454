"""A page object for the chat page: what a user does and sees, in the page's own terms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from playwright.async_api import BrowserContext, ConsoleMessage, Locator, Page, expect

from tests.server_harness import RunningServer


@dataclass
class ChatPage:
    page: Page
    server: RunningServer
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        context: BrowserContext,
        server: RunningServer,
        path: str = "/",
        *,
        connect: bool = True,
    ) -> ChatPage:
        return await cls.load(await context.new_page(), server, path, connect=connect)

    @classmethod
    async def load(
        cls, page: Page, server: RunningServer, path: str = "/", *, connect: bool = True
    ) -> ChatPage:
        """Load the page in ``page`` (set up routes before) and wait until it is connected.

        With ``connect=False`` it does not wait (the page may show the sign-in screen).
        """
        chat = cls(page, server)
        page.on("pageerror", lambda error: chat.errors.append(str(error)))
        page.on("console", chat._on_console)
        await page.goto(server.http_url + path)
        if connect:
            await chat.wait_connected()
        return chat

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(message.text)

    async def wait_connected(self) -> None:
        await expect(self.page.locator(".connection")).to_have_attribute("data-status", "open")

    async def assert_healthy(self) -> None:
        """No uncaught script error, no CSP violation, nothing about CSP on the console."""
        assert self.errors == []
        violations = await self.page.evaluate("window.__cspViolations ?? []")
        assert violations == []
        assert [line for line in self.console if "Content Security Policy" in line] == []

    # -- parts of the page ---------------------------------------------------------------

    @property
    def input(self) -> Locator:
        return self.page.locator("#composer-input")

    @property
    def send_button(self) -> Locator:
        return self.page.locator('[data-action="send"]')

    @property
    def stop_button(self) -> Locator:
        return self.page.locator('[data-action="stop"]')

    @property
    def answers(self) -> Locator:
        return self.page.locator('article[data-role="assistant"][data-message-id]')

    @property
    def questions(self) -> Locator:
        return self.page.locator('article[data-role="user"]')

    @property
    def conversations(self) -> Locator:
        return self.page.locator(".conv-item")

    @property
    def last_answer(self) -> Locator:
        return self.answers.last

    @property
    def last_answer_text(self) -> Locator:
        return self.answers.last.locator("lt-markdown")

    @property
    def sign_in_screen(self) -> Locator:
        return self.page.locator("lt-sign-in")

    @property
    def sign_in_heading(self) -> Locator:
        return self.sign_in_screen.get_by_role("heading", name="Sign in")

    @property
    def sign_in_error(self) -> Locator:
        return self.sign_in_screen.get_by_role("alert")

    @property
    def signed_out_notice(self) -> Locator:
        return self.sign_in_screen.locator(".sign-in-notice")

    @property
    def account(self) -> Locator:
        """The signed-in user's name in the sidebar."""
        return self.page.locator(".account-name")

    def conversation_id(self) -> str | None:
        match = re.search(r"/c/([A-Za-z0-9_.:-]+)$", self.page.url)
        return match.group(1) if match else None

    # -- what a user does ----------------------------------------------------------------

    async def type_and_send(self, text: str) -> None:
        await self.input.fill(text)
        await self.input.press("Enter")

    async def send(self, text: str) -> None:
        """Send ``text`` and wait until the page shows it and its answer has started."""
        before = await self.answers.count()
        await self.type_and_send(text)
        await expect(self.answers).to_have_count(before + 1)

    async def wait_answer(self, status: str = "completed") -> Locator:
        """Wait for the last answer to end with ``status``; returns the answer."""
        answer = self.last_answer
        await expect(answer).to_have_attribute("data-status", status)
        return answer

    async def sign_in(self, user: str, password: str) -> None:
        """Fill in the sign-in screen and submit it (the outcome is for the caller to await)."""
        await self.sign_in_screen.get_by_label("User name").fill(user)
        await self.sign_in_screen.get_by_label("Password").fill(password)
        await self.sign_in_screen.get_by_role("button", name="Sign in").click()

    async def sign_out(self) -> None:
        await self.page.locator('[data-action="sign-out"]').click()

    async def new_chat(self) -> None:
        await self.page.locator('[data-action="new-chat"]').click()
        await expect(self.page.locator("lt-empty-state")).to_be_visible()
