"""GET /v1/models and GET /v1/models/{id} with the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from tests.cluster import create_user
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=server.http_url + "/v1", api_key="alice", max_retries=0) as sdk:
        yield sdk


async def test_the_list_has_every_model_the_default_first(
    server: RunningServer, client: AsyncOpenAI
) -> None:
    """The list is the server's models, the default first, each OpenAI's model object with
    liaotian's own member (available, capabilities, default)."""
    listed = [model async for model in client.models.list()]
    served = {model.id for model in server.services.providers.models()}
    assert {model.id for model in listed} == served
    assert listed[0].id == "qwen-plus"
    first = listed[0].model_dump()
    assert (first["object"], first["owned_by"]) == ("model", "dashscope")
    assert first["liaotian"]["default"] is True
    assert first["liaotian"]["available"] is True
    assert first["liaotian"]["capabilities"]["thinking"] is True
    assert [model.model_dump()["liaotian"]["default"] for model in listed[1:]] == [False] * (
        len(listed) - 1
    )


async def test_one_model_is_the_same_object_as_in_the_list(client: AsyncOpenAI) -> None:
    """GET /v1/models/{id} answers the model's object as the list has it."""
    listed = {model.id: model async for model in client.models.list()}
    one = await client.models.retrieve("qwen-plus")
    assert one == listed["qwen-plus"]


async def test_an_unknown_model_is_404_model_not_found(client: AsyncOpenAI) -> None:
    """A model liaotian does not serve: 404 in OpenAI's error format, code model_not_found."""
    with pytest.raises(openai.NotFoundError) as refused:
        await client.models.retrieve("gpt-9")
    assert (refused.value.code, refused.value.param) == ("model_not_found", "model")
    assert refused.value.type == "invalid_request_error"


async def test_with_accounts_listing_needs_a_token(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """With users, the list without a token is 401; with one it answers."""
    token = await create_user(database_url, "alice")
    async with run_server(make_settings()) as server, aiohttp.ClientSession() as session:
        async with session.get(server.http_url + "/v1/models") as refused:
            assert refused.status == 401
            assert (await refused.json())["error"]["code"] == "missing_api_key"
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(server.http_url + "/v1/models", headers=headers) as listed:
            assert listed.status == 200
            assert (await listed.json())["object"] == "list"
