"""The empty state tells the truth about the model: the embedded demo model is called what
it is, with how to configure a real one and prompts a 135M model can handle."""

from __future__ import annotations

from playwright.async_api import BrowserContext, expect

from liaotian.settings import LOCAL_MODEL_ID
from tests.browser.chat_page import ChatPage
from tests.conftest import SettingsFactory
from tests.server_harness import run_server

DEMO_PROMPTS = [
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Give three tips for better sleep.",
    "Explain what a CPU is in one sentence.",
]


async def expect_demo(chat: ChatPage) -> None:
    empty = chat.page.locator("lt-empty-state")
    await expect(empty.locator(".empty-state")).to_have_attribute("data-kind", "demo")
    await expect(empty.locator(".empty-title")).to_have_text("Try the tiny demo model")
    await expect(empty.locator(".empty-subtitle")).to_contain_text(LOCAL_MODEL_ID)
    await expect(empty.locator(".empty-subtitle")).to_contain_text("running offline")
    note = empty.locator('[data-note="configure"]')
    await expect(note).to_contain_text("DASHSCOPE_API_KEY")
    await expect(note).to_contain_text("OPENAI_BASE_URL")
    await expect(note).to_contain_text("docs/configuration.md")
    await expect(empty.locator(".example-prompt")).to_have_text(DEMO_PROMPTS)


async def test_a_real_provider_gets_the_richer_examples(chat: ChatPage) -> None:
    """With a real provider's model, the welcome names it and offers the richer prompts."""
    empty = chat.page.locator("lt-empty-state")
    await expect(empty.locator(".empty-state")).to_have_attribute("data-kind", "default")
    await expect(empty.locator(".empty-title")).to_have_text("What can I help with?")
    await expect(empty.locator(".empty-subtitle")).to_contain_text("Answers come from qwen-plus.")
    await expect(empty).not_to_contain_text("demo")
    await expect(empty.locator(".example-prompt")).to_have_count(4)
    await expect(empty.locator(".example-prompt").first).not_to_have_text(DEMO_PROMPTS[0])


async def test_the_embedded_model_is_introduced_as_a_tiny_demo(
    context: BrowserContext, make_settings: SettingsFactory
) -> None:
    """With no provider configured, the embedded model is the default: the welcome says it
    is a tiny offline demo, how to configure a real model, and offers simple prompts."""
    settings = make_settings(
        local_enabled=True, dashscope_api_key=None, openai_base_url=None, default_model=None
    )
    async with run_server(settings) as server:
        chat = await ChatPage.open(context, server)
        await expect_demo(chat)
        await chat.assert_healthy()


async def test_choosing_the_embedded_model_switches_the_welcome(
    context: BrowserContext, make_settings: SettingsFactory
) -> None:
    """On a server with a real provider too, choosing the embedded model brings the demo
    welcome, and choosing the real one back brings the richer one."""
    async with run_server(make_settings(local_enabled=True)) as both:
        chat = await ChatPage.open(context, both)
        picker = chat.page.locator("select.model-select")
        empty = chat.page.locator("lt-empty-state .empty-state")
        await expect(empty).to_have_attribute("data-kind", "default")
        await picker.select_option(LOCAL_MODEL_ID)
        await expect_demo(chat)
        await picker.select_option("qwen-plus")
        await expect(empty).to_have_attribute("data-kind", "default")
        await chat.assert_healthy()
