"""Which model a request that names none gets: a configured provider's over the embedded
demo model, and always one that exists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from liaotian.errors import ModelNotFound
from liaotian.providers.base import ChatRequest, ModelInfo, Provider, StreamItem
from liaotian.providers.registry import ProviderRegistry
from liaotian.settings import Settings
from tests.conftest import SettingsFactory
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer, run_server
from tests.test_chat_cli import run_cli, server_url
from tests.wsclient import Frame, RawClient, of_type


class Listed(Provider):
    """A provider that only lists models (``id`` or ``id!`` for an unavailable one)."""

    kind: ClassVar[str] = "listed"

    def __init__(self, name: str, kind: str, *ids: str) -> None:
        super().__init__(name)
        self.kind = kind  # type: ignore[misc]
        self._models = [
            ModelInfo(
                id=model.rstrip("!"),
                provider=name,
                upstream=model,
                available=not model.endswith("!"),
                reason="a key" if model.endswith("!") else None,
            )
            for model in ids
        ]

    def models(self) -> list[ModelInfo]:
        return self._models

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        raise NotImplementedError


async def default_of(*providers: Provider, configured: str | None = None) -> str:
    registry = ProviderRegistry(list(providers), Settings(default_model=configured))
    await registry.start()
    return registry.default_model


async def test_a_configured_provider_wins_over_the_embedded_model() -> None:
    """Registered before it or not, the embedded (and scripted) models come last."""
    local = Listed("local", "local", "smollm2-135m-instruct")
    fake = Listed("fake", "fake", "fake-echo")
    openai = Listed("openai", "openai", "llama3.2", "qwen2.5")
    assert await default_of(local, fake, openai) == "llama3.2"


async def test_an_unconfigured_provider_is_passed_over() -> None:
    """DashScope's models without a key are listed but unavailable: the next one is chosen."""
    dashscope = Listed("dashscope", "dashscope", "qwen-plus!", "qwen-max!")
    local = Listed("local", "local", "smollm2-135m-instruct")
    openai = Listed("openai", "openai", "gpt-x")
    assert await default_of(dashscope, local, openai) == "gpt-x"
    assert await default_of(dashscope, local) == "smollm2-135m-instruct"


async def test_with_nothing_available_the_default_is_still_a_listed_model() -> None:
    """Its use then fails naming what to configure, never "no model called …"."""
    dashscope = Listed("dashscope", "dashscope", "qwen-plus!", "qwen-max!")
    assert await default_of(dashscope) == "qwen-plus"


async def test_the_default_model_setting_wins() -> None:
    openai = Listed("openai", "openai", "gpt-x")
    local = Listed("local", "local", "smollm2-135m-instruct")
    assert await default_of(openai, local, configured="smollm2-135m-instruct") == (
        "smollm2-135m-instruct"
    )


async def test_an_unknown_model_error_lists_the_models_in_plain_words() -> None:
    """No frame names: the message says which models there are."""
    registry = ProviderRegistry([Listed("openai", "openai", "gpt-x", "gpt-y", "off!")])
    with pytest.raises(ModelNotFound) as raised:
        registry.resolve("gpt-z")
    assert "the models here are: gpt-x, gpt-y;" in raised.value.message
    assert "models.list" not in raised.value.message


async def hello(server: RunningServer) -> Frame:
    client = await RawClient.open(f"{server.ws_url}?client_id=t")
    frame = await client.recv()
    await client.send({"type": "models.list", "id": "m"})
    [*_, models] = await client.until(of_type("models", id="m"))
    await client.close()
    assert frame["default_model"] == models["default"]
    return frame


async def test_an_openai_endpoint_is_the_default_over_the_embedded_model(
    make_settings: SettingsFactory,
) -> None:
    """The README's Ollama case: only OPENAI_BASE_URL set, the embedded model on."""
    settings = make_settings(local_enabled=True, dashscope_api_key=None, default_model=None)
    async with run_server(settings) as server:
        assert (await hello(server))["default_model"] == "fake-chat"


async def test_without_the_embedded_model_the_default_exists(
    make_settings: SettingsFactory,
) -> None:
    """Nothing configured: the default is a listed model, and a send says what to set."""
    settings = make_settings(
        local_enabled=False, dashscope_api_key=None, openai_base_url=None, default_model=None
    )
    async with run_server(settings) as server:
        assert (await hello(server))["default_model"] == "qwen3-max"
        client = await RawClient.open(f"{server.ws_url}?client_id=t")
        await client.recv()
        await client.send({"type": "chat.send", "id": "s", "message": "hi"})
        [*_, error] = await client.until(of_type("error", id="s"))
        assert error["code"] == "provider_not_configured"
        assert "DASHSCOPE_API_KEY" in error["message"]
        await client.close()


async def test_liaotian_chat_works_out_of_the_box_with_an_endpoint(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """`liaotian chat "…"` with no model named gets the endpoint's model's answer."""
    settings = make_settings(local_enabled=False, dashscope_api_key=None, default_model=None)
    async with run_server(settings) as server:
        run = await run_cli(tmp_path, "--server", server_url(server), "hello there")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected_reply("hello there").strip()
