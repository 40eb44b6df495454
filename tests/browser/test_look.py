"""Language, theme and the phone layout."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import new_context
from tests.server_harness import RunningServer


async def test_the_language_follows_the_browser(
    browser: Browser, owner: str, server: RunningServer
) -> None:
    """A browser that prefers Chinese gets the page in Chinese."""
    context = await new_context(browser, owner, locale="zh-CN")
    chat = await ChatPage.open(context, server)
    await expect(chat.page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(chat.page.locator('[data-action="new-chat"]')).to_have_text("新对话")
    await expect(chat.page.locator(".empty-title")).to_have_text("有什么可以帮你？")
    await expect(chat.input).to_have_attribute("placeholder", "给聊天发消息…")
    await chat.send("你好")
    answer = await chat.wait_answer()
    await expect(answer.locator(".chip")).to_have_text("已完成")
    await chat.assert_healthy()
    await context.close()


async def test_switching_language_translates_the_page_and_is_remembered(chat: ChatPage) -> None:
    """Choosing 简体中文 translates every visible string at once and survives a reload."""
    await chat.send("hello")
    await chat.wait_answer()
    page = chat.page
    await page.locator('[data-control="language"]').select_option("zh-CN")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(page.locator('[data-action="new-chat"]')).to_have_text("新对话")
    await expect(chat.last_answer.locator(".chip")).to_have_text("已完成")
    await expect(chat.last_answer.locator(".msg-meta")).to_contain_text("首 token")
    await expect(page.locator(".connection-label")).to_have_text("已连接")
    await expect(page.locator(".composer-hint")).to_have_text(
        "Enter 发送 · Shift+Enter 换行 · Esc 停止"
    )
    await page.reload()
    await chat.wait_connected()
    await expect(page.locator('[data-action="new-chat"]')).to_have_text("新对话")
    await page.locator('[data-control="language"]').select_option("en")
    await expect(page.locator('[data-action="new-chat"]')).to_have_text("New chat")


async def test_dark_mode_follows_the_system_and_can_be_switched(
    browser: Browser, owner: str, server: RunningServer
) -> None:
    """A dark system gets the dark theme; the theme buttons override it and are remembered."""
    context = await new_context(browser, owner, color_scheme="dark")
    chat = await ChatPage.open(context, server)
    page = chat.page
    html = page.locator("html")
    await expect(html).to_have_attribute("data-theme", "dark")
    await expect(page.locator("body")).to_have_css("background-color", "rgb(22, 23, 27)")
    await page.locator('[data-theme-choice="light"]').click()
    await expect(html).to_have_attribute("data-theme", "light")
    await expect(page.locator("body")).to_have_css("background-color", "rgb(255, 255, 255)")
    await page.reload()
    await chat.wait_connected()
    await expect(html).to_have_attribute("data-theme", "light")
    await page.locator('[data-theme-choice="system"]').click()
    await expect(html).to_have_attribute("data-theme", "dark")
    await chat.assert_healthy()
    await context.close()


async def test_code_is_highlighted_in_the_theme_of_the_page(chat: ChatPage) -> None:
    """highlight.js colours follow the page's theme (its dark stylesheet is scoped to dark)."""
    await chat.input.fill("\n```python\nimport os\n```")
    await chat.input.press("Enter")
    keyword = (await chat.wait_answer()).locator(".hljs-keyword").first
    await expect(keyword).to_have_css("color", "rgb(215, 58, 73)")
    await chat.page.locator('[data-theme-choice="dark"]').click()
    await expect(keyword).to_have_css("color", "rgb(255, 123, 114)")


async def test_a_phone_gets_the_conversations_behind_a_menu(
    browser: Browser, owner: str, server: RunningServer
) -> None:
    """On a phone-sized screen the sidebar slides over the chat and closes after a choice."""
    context = await new_context(
        browser, owner, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    chat = await ChatPage.open(context, server)
    page = chat.page
    sidebar = page.locator(".sidebar")
    await expect(sidebar).not_to_be_in_viewport()
    await chat.send("on the go")
    await chat.wait_answer()
    box = await chat.input.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 390
    await page.locator('[data-action="open-sidebar"]').click()
    await expect(sidebar).to_be_in_viewport()
    await page.locator('[data-action="new-chat"]').click()
    await expect(sidebar).not_to_be_in_viewport()
    await expect(page.locator("lt-empty-state")).to_be_visible()
    await chat.assert_healthy()
    await context.close()
