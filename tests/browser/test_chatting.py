"""Chatting: streaming answers, stop, regenerate, edit, copy, controls, errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from playwright.async_api import BrowserContext, expect

from tests.browser.chat_page import ChatPage
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, expected_reply
from tests.server_harness import run_server

SLOW = "count slowly [tokens=400] [delay=20]"


async def test_send_streams_the_answer_as_markdown(chat: ChatPage) -> None:
    """A sent message shows at once; its answer streams in as markdown and ends with details."""
    await chat.send("hello **world**")
    await expect(chat.questions.last).to_contain_text("hello **world**")
    answer = await chat.wait_answer()
    text = expected_reply("hello **world**").replace("**", "")
    await expect(answer.locator("lt-markdown")).to_have_text(text)
    await expect(answer.locator("lt-markdown strong")).to_have_text("world")
    meta = answer.locator(".msg-meta")
    await expect(meta.locator(".chip")).to_have_text("Completed")
    await expect(meta).to_contain_text("qwen-plus")
    await expect(meta).to_contain_text("to first token")
    await expect(meta).to_contain_text("total")
    await expect(meta).to_contain_text("out tokens")
    assert chat.conversation_id() is not None


async def test_enter_sends_and_shift_enter_adds_a_line(chat: ChatPage) -> None:
    """Shift+Enter adds a line and the box grows; Enter sends the whole text."""
    await chat.input.click()
    height = (await chat.input.bounding_box() or {"height": 0})["height"]
    await chat.input.type("line one")
    for _ in range(3):
        await chat.input.press("Shift+Enter")
    await chat.input.type("line two")
    assert await chat.input.input_value() == "line one\n\n\nline two"
    grown = (await chat.input.bounding_box() or {"height": 0})["height"]
    assert grown > height + 30
    await chat.input.press("Enter")
    await expect(chat.questions.last.locator(".bubble")).to_have_text("line one\n\n\nline two")
    await expect(chat.input).to_have_value("")
    await chat.wait_answer()


async def test_stop_ends_the_answer_and_keeps_its_text(chat: ChatPage) -> None:
    """Stop while streaming: the answer ends as stopped with the text so far; Send is back."""
    await chat.send(SLOW)
    await expect(chat.last_answer_text).to_contain_text("t5 ")
    await chat.stop_button.click()
    answer = await chat.wait_answer("cancelled")
    await expect(answer.locator(".chip")).to_have_text("Stopped")
    text = await answer.locator("lt-markdown").inner_text()
    assert text.startswith("t0 t1 t2 t3 t4 t5")
    assert "t399" not in text
    await expect(chat.stop_button).to_have_count(0)
    await expect(chat.send_button).to_be_visible()


async def test_escape_stops_the_answer(chat: ChatPage) -> None:
    """Esc stops the answer being written."""
    await chat.send(SLOW)
    await expect(chat.last_answer_text).to_contain_text("t3 ")
    await chat.page.keyboard.press("Escape")
    await chat.wait_answer("cancelled")


async def test_regenerate_replaces_the_last_answer(chat: ChatPage) -> None:
    """Regenerate answers the last message again, in place of the old answer."""
    await chat.send("say it again")
    old = await chat.wait_answer()
    old_id = await old.get_attribute("data-message-id")
    await old.locator('[data-action="regenerate"]').click()
    await expect(chat.answers.first).not_to_have_attribute("data-message-id", old_id or "")
    await chat.wait_answer()
    await expect(chat.answers).to_have_count(1)
    await expect(chat.questions).to_have_count(1)
    await expect(chat.last_answer_text).to_have_text(expected_reply("say it again"))


async def test_edit_resends_a_message_and_drops_what_followed(chat: ChatPage) -> None:
    """Editing the first message replaces it and everything after it with the new exchange."""
    await chat.send("first question")
    await chat.wait_answer()
    await chat.send("second question")
    await chat.wait_answer()
    first = chat.questions.first
    await first.hover()
    await first.locator('[data-action="edit"]').click()
    editor = chat.page.get_by_label("Edit your message")
    await editor.fill("better question")
    await editor.press("Enter")
    await expect(chat.questions).to_have_count(1)
    await expect(chat.questions.first.locator(".bubble")).to_have_text("better question")
    await chat.wait_answer()
    await expect(chat.answers).to_have_count(1)
    await expect(chat.last_answer_text).to_have_text(expected_reply("better question"))


async def test_copy_puts_the_answers_markdown_on_the_clipboard(chat: ChatPage) -> None:
    """The answer's copy button copies its markdown source."""
    await chat.send("copy *me*")
    answer = await chat.wait_answer()
    await answer.locator('[data-action="copy"]').click()
    await expect(answer.locator('[data-action="copy"].done')).to_be_visible()
    assert await chat.page.evaluate("navigator.clipboard.readText()") == expected_reply("copy *me*")


async def test_code_blocks_are_highlighted_and_copyable(chat: ChatPage) -> None:
    """A fenced code block gets highlighting, its language and a copy button."""
    prompt = "\n```python\ndef answer():\n    return 42\n```"
    await chat.input.fill(prompt)
    await chat.input.press("Enter")
    answer = await chat.wait_answer()
    block = answer.locator(".code-block")
    await expect(block.locator(".code-lang")).to_have_text("python")
    await expect(block.locator(".hljs-keyword").first).to_have_text("def")
    await block.locator('[data-action="copy-code"]').click()
    await expect(block.locator('[data-action="copy-code"]')).to_have_text("Copied")
    copied = await chat.page.evaluate("navigator.clipboard.readText()")
    assert copied == "def answer():\n    return 42\n"


async def test_answers_without_streaming_arrive_whole(chat: ChatPage, fake: FakeUpstream) -> None:
    """With streaming off, the request asks for one whole answer and the page shows it."""
    await chat.page.locator('[data-action="settings"]').click()
    await chat.page.locator('[data-control="stream"]').uncheck()
    await chat.page.keyboard.press("Escape")
    await chat.send("all at once")
    await chat.wait_answer()
    await expect(chat.last_answer_text).to_have_text(expected_reply("all at once"))
    assert fake.requests[-1].headers.get("X-DashScope-SSE") != "enable"


async def test_system_prompt_and_sampling_settings_reach_the_model(
    chat: ChatPage, fake: FakeUpstream
) -> None:
    """The conversation's system prompt, temperature and max tokens go with the message."""
    page = chat.page
    await page.locator('[data-action="settings"]').click()
    await page.get_by_label("System prompt").fill("You are a pirate.")
    await page.get_by_text("Advanced").click()
    await page.get_by_label("Model default").uncheck()
    await page.get_by_label("Max tokens").fill("3")
    await page.get_by_label("Max tokens").press("Tab")
    await page.keyboard.press("Escape")
    await chat.send("ahoy there friend")
    answer = await chat.wait_answer()
    await expect(answer.locator(".note")).to_have_text("Stopped at the max tokens limit.")
    body = fake.requests[-1].body
    assert body["input"]["messages"][0] == {"role": "system", "content": "You are a pirate."}
    assert body["parameters"]["max_tokens"] == 3
    assert body["parameters"]["temperature"] == 0.7


async def test_provider_errors_are_explained_in_plain_words(chat: ChatPage) -> None:
    """A provider failure ends the answer as an error that says what happened and what to do."""
    await chat.send("this will fail [fault=401]")
    answer = await chat.wait_answer("error")
    await expect(answer.locator(".chip")).to_have_text("Error")
    card = answer.locator(".problem-card")
    await expect(card).to_contain_text("The model provider rejected the server's API key.")
    await expect(card).to_contain_text("check the key, then regenerate")


async def test_unavailable_models_are_listed_with_why_and_blocked(
    context: BrowserContext, make_settings: SettingsFactory
) -> None:
    """Without a DashScope key its models show as unavailable, and why, before any send."""
    settings = make_settings(dashscope_api_key=None, default_model="qwen-plus")
    async with run_server(settings) as server:
        chat = await ChatPage.open(context, server)
        problem = chat.page.locator(".composer-problem")
        await expect(problem).to_contain_text(
            "qwen-plus is not available: it needs DASHSCOPE_API_KEY on the server."
        )
        await expect(problem).to_contain_text("or choose another model")
        option = chat.page.locator('select.model-select option[value="qwen-max"]')
        await expect(option).to_be_disabled()
        await expect(option).to_contain_text("unavailable: Needs DASHSCOPE_API_KEY on the server")
        await chat.input.fill("hello")
        await chat.input.press("Enter")
        await expect(chat.questions).to_have_count(0)
        await chat.page.locator("select.model-select").select_option("fake-chat")
        await expect(problem).to_have_count(0)
        await chat.input.press("Enter")
        await chat.wait_answer()
        await expect(chat.last_answer.locator(".msg-meta")).to_contain_text("fake-chat")
        await chat.assert_healthy()


async def test_export_downloads_markdown_and_json(chat: ChatPage) -> None:
    """Export gives the whole conversation as a Markdown file and as a JSON file."""
    await chat.send("export me")
    await chat.wait_answer()
    page = chat.page
    for action, name in (("export-markdown", "export-me.md"), ("export-json", "export-me.json")):
        await page.locator(".export-menu summary").click()
        async with page.expect_download() as info:
            await page.locator(f'[data-action="{action}"]').click()
        download = await info.value
        assert download.suggested_filename == name
        text = await asyncio.to_thread(Path(await download.path()).read_text, encoding="utf-8")
        if name.endswith(".md"):
            assert text.startswith("# export me\n")
            assert expected_reply("export me") in text
        else:
            document = json.loads(text)
            assert [m["role"] for m in document["messages"]] == ["user", "assistant"]
            assert document["messages"][1]["content"] == expected_reply("export me")
