"""Accounts for the account settings and administration page tests, and what those pages
show, in the pages' own terms (the chat page's parts are in :mod:`tests.browser.chat_page`)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from playwright.async_api import BrowserContext, Locator, Page, expect

from liaotian.store import create_engine
from liaotian.store.accounts import Accounts
from liaotian.store.migrate import upgrade
from tests.browser.chat_page import ChatPage
from tests.server_harness import RunningServer

PASSWORD = "correct horse battery"
TOKENS_REFUSAL = "daily token quota reached, resets at 00:00 UTC"


def unique(prefix: str) -> str:
    """A new user name: sign-in attempts are rate limited per name, per process."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def add_users(database_url: str, **roles: str) -> None:
    """Create accounts (name → role) before the server starts, with ``PASSWORD``."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        accounts = Accounts(engine)
        for name, role in roles.items():
            await accounts.add_user(name, PASSWORD, role=role)
    finally:
        await engine.dispose()


async def signed_in(context: BrowserContext, server: RunningServer, user: str) -> ChatPage:
    """A page of ``context`` signed in as ``user``, connected."""
    chat = await ChatPage.open(context, server, connect=False)
    await chat.sign_in(user, PASSWORD)
    await chat.wait_connected()
    return chat


async def http(
    server: RunningServer, method: str, path: str, token: str | None = None
) -> tuple[int, Any]:
    """One request without a cookie (with ``token`` as Bearer when given): status and JSON."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.http_url + path, headers=headers) as response,
    ):
        body = await response.json(content_type=None) if response.content_length != 0 else None
        return response.status, body


def number(text: str) -> int:
    """The integer a cell shows ("12,345" → 12345)."""
    digits = re.sub(r"[^0-9]", "", text)
    return int(digits) if digits else 0


@dataclass
class AccountSettings:
    """The signed-in account's own settings page."""

    page: Page

    @classmethod
    async def open(cls, chat: ChatPage) -> AccountSettings:
        await chat.page.locator('[data-action="account-settings"]').click()
        view = cls(chat.page)
        await expect(view.root.get_by_role("heading", name="Account settings")).to_be_visible()
        return view

    @property
    def root(self) -> Locator:
        return self.page.locator("lt-account-view")

    def stat(self, name: str) -> Locator:
        return self.root.locator(f'[data-stat="{name}"] dd')

    def quota(self, limit: str) -> Locator:
        return self.root.locator(f'.quota[data-limit="{limit}"]')

    def token_row(self, name: str) -> Locator:
        return self.root.locator(".token-list tbody tr").filter(
            has=self.page.get_by_role("rowheader", name=name, exact=True)
        )

    async def create_token(self, name: str) -> str:
        """Create an API token; the secret the page shows once."""
        await self.root.get_by_label("Name", exact=True).fill(name)
        await self.root.get_by_role("button", name="Create token").click()
        secret = self.root.locator('[data-testid="token-secret"]')
        await expect(secret).to_have_text(re.compile(r"^lt_\S+$"))
        return await secret.inner_text()

    async def revoke_token(self, name: str) -> None:
        await self.token_row(name).get_by_role("button", name=f"Revoke “{name}”").click()
        await self.page.locator("dialog.confirm[open] [data-action='confirm']").click()
        await expect(self.token_row(name)).to_have_attribute("data-revoked", "true")

    async def close(self) -> None:
        await self.root.locator('[data-action="close-page"]').click()
        await expect(self.root).to_have_count(0)


@dataclass
class Administration:
    """The administration page."""

    page: Page

    @classmethod
    async def open(cls, chat: ChatPage) -> Administration:
        await chat.page.locator('[data-action="administration"]').click()
        view = cls(chat.page)
        await expect(view.root.get_by_role("heading", name="Administration")).to_be_visible()
        return view

    @property
    def root(self) -> Locator:
        return self.page.locator("lt-admin-view")

    @property
    def outcome(self) -> Locator:
        return self.root.locator(".page-done, .page-problem")

    async def tab(self, name: str) -> None:
        tab = self.root.get_by_role("tab", name=name, exact=True)
        await tab.click()
        await expect(tab).to_have_attribute("aria-selected", "true")

    def user_row(self, name: str) -> Locator:
        return self.root.locator(f'.user-list tr[data-user="{name}"]')

    async def create_user(self, name: str, password: str, **limits: int | None) -> None:
        """Fill in "Create a user" (own limits: a number, or None for "No limit") and submit."""
        form = self.root.locator("form.create-user")
        await form.get_by_label("User name").fill(name)
        await form.get_by_label("Password", exact=True).fill(password)
        if limits:
            await form.locator("summary").click()
            await set_limits(form, limits)
        await form.get_by_role("button", name="Create", exact=True).click()
        await expect(self.outcome).to_have_text(f"Created {name}.")
        await expect(self.user_row(name)).to_be_visible()

    async def edit_limits(self, name: str, **limits: int | str | None) -> None:
        """Open the user's limits, set them (a number, None for "No limit", "role" for the
        role's default), save."""
        await self.user_row(name).get_by_role("button", name=f"Edit the limits of {name}").click()
        dialog = self.page.locator("dialog.admin-dialog[open]")
        await expect(dialog).to_be_visible()
        await set_limits(dialog, limits)
        await dialog.get_by_role("button", name="Save").click()
        await expect(self.outcome).to_have_text(f"Saved for {name}.")

    def token_row(self, user: str, name: str) -> Locator:
        return self.root.locator(f'.admin-token-list tr[data-user="{user}"]').filter(
            has=self.page.get_by_role("rowheader", name=name, exact=True)
        )

    async def revoke_token(self, user: str, name: str) -> None:
        await self.tab("API tokens")
        row = self.token_row(user, name)
        await row.get_by_role("button", name=f"Revoke “{name}” of {user}").click()
        await self.page.locator("dialog.confirm[open] [data-action='confirm']").click()
        await expect(row).to_have_attribute("data-revoked", "true")

    def usage_cell(self, key: str, cell: str = "tokens") -> Locator:
        """Today's row for ``key`` (a user or model; the day with by=day) in the usage table."""
        return self.root.locator(
            f'.usage-table tr[data-today="true"][data-key="{key}"] [data-cell="{cell}"]'
        )


async def set_limits(form: Locator, limits: Mapping[str, int | str | None]) -> None:
    for name, value in limits.items():
        field = form.locator(f'fieldset[data-limit="{name}"]')
        mode = "role" if value == "role" else "none" if value is None else "amount"
        await field.locator('[data-control="limit-mode"]').select_option(mode)
        if mode == "amount":
            await field.locator('[data-control="limit-amount"]').fill(str(value))
