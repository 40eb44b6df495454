"""Turns made through the OpenAI-compatible API show in the page like the page's own."""

from __future__ import annotations

from openai import AsyncOpenAI
from playwright.async_api import expect

from tests.browser.chat_page import ChatPage
from tests.fake_upstream import expected_reply


def api_client(chat: ChatPage, owner: str) -> AsyncOpenAI:
    """The SDK as the page's owner (open mode, per-client: the API key is the client id)."""
    return AsyncOpenAI(base_url=chat.server.http_url + "/v1", api_key=owner, max_retries=0)


async def test_a_stored_response_appears_in_the_open_page_and_opens_with_its_turns(
    chat: ChatPage, owner: str
) -> None:
    """A Responses turn and its follow-up (previous_response_id) appear live in the open
    page's sidebar as one conversation, which shows both turns when opened."""
    client = api_client(chat, owner)
    first = await client.responses.create(model="qwen-plus", input="from the api")
    item = chat.conversations.filter(has_text="from the api")
    await expect(item).to_have_count(1)
    await client.responses.create(
        model="qwen-plus", input="and a follow-up", previous_response_id=first.id
    )
    await item.click()
    await expect(chat.questions).to_have_text(["from the api", "and a follow-up"])
    await expect(chat.answers).to_have_count(2)
    await expect(chat.last_answer_text).to_have_text(expected_reply("and a follow-up"))
    await expect(chat.conversations).to_have_count(1)
    await client.close()


async def test_an_unkept_chat_completion_never_shows_in_the_page(
    chat: ChatPage, owner: str
) -> None:
    """A chat completion without ``store`` is answered but leaves the sidebar empty, while
    one with ``store: true`` shows up."""
    client = api_client(chat, owner)
    unkept = await client.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": "not kept"}]
    )
    assert unkept.choices[0].message.content == expected_reply("not kept")
    await client.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": "kept one"}], store=True
    )
    await expect(chat.conversations.filter(has_text="kept one")).to_have_count(1)
    await expect(chat.conversations).to_have_count(1)
    await client.close()
