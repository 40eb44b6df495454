"""What a model can do: reported by models.list, set per model, checked before the provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liaotian.errors import ConfigError
from liaotian.settings import load_settings
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream
from tests.server_harness import run_server
from tests.test_chat import connect, start

NOTHING = {"vision": False, "thinking": False, "search": False}
ALWAYS_THINKS = {"thinking": True, "thinking_default": True, "thinking_fixed": True}


def test_the_models_setting_from_a_toml_file(tmp_path: Path) -> None:
    """``[models."x"]`` tables set capabilities per model id."""
    config = tmp_path / "liaotian.toml"
    config.write_text('[models."local/qwen3"]\nthinking = true\nvision = true\n')
    settings = load_settings(config)
    assert settings.models["local/qwen3"].thinking is True
    assert settings.models["local/qwen3"].search is None


def test_the_models_setting_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LIAOTIAN_MODELS`` takes the same tables as JSON."""
    monkeypatch.setenv("LIAOTIAN_MODELS", '{"qwen3.6-plus": {"endpoint": "multimodal"}}')
    assert load_settings().models["qwen3.6-plus"].endpoint == "multimodal"


def test_an_unknown_capability_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in a model's table stops the start with the field named."""
    monkeypatch.setenv("LIAOTIAN_MODELS", '{"qwen-plus": {"vison": true}}')
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "vison" in refused.value.message


async def test_models_list_reports_the_configured_capabilities(
    make_settings: SettingsFactory,
) -> None:
    """A discovered model can do what the models setting says; the rest keep the defaults."""
    settings = make_settings(models={"fake-chat": {"vision": True, "search": True}})
    async with run_server(settings) as server:
        client = await connect(server)
        await client.send({"type": "models.list", "id": 1})
        frame = await client.recv()
        models = {model["id"]: model["capabilities"] for model in frame["models"]}
        assert models["fake-chat"] == {
            "vision": True,
            "thinking": False,
            "thinking_default": False,
            "thinking_fixed": False,
            "search": True,
        }
        assert models["fake-mini"]["vision"] is False
        await client.close()


@pytest.mark.parametrize(
    ("fields", "capability"),
    [
        ({"attachments": ["a1"]}, "vision"),
        ({"thinking": True}, "thinking"),
        ({"thinking_budget": 100}, "thinking"),
        ({"search": True}, "search"),
        ({"model": "always-thinks", "thinking": False}, "thinking"),
    ],
)
async def test_what_a_model_cannot_do_is_refused_before_the_provider(
    make_settings: SettingsFactory,
    fake: FakeUpstream,
    fields: dict[str, Any],
    capability: str,
) -> None:
    """The error names the capability; nothing is stored and the provider is not called."""
    settings = make_settings(
        models={"fake-chat": NOTHING, "fake-mini": ALWAYS_THINKS},
        openai_endpoints=[],
    )
    fields = {"model": "fake-chat", **fields}
    if fields["model"] == "always-thinks":
        fields["model"] = "fake-mini"
    async with run_server(settings) as server:
        client = await connect(server)
        requests_before = fake.stats.requests
        refused = await start(client, "look at this", **fields)
        assert refused["type"] == "error"
        assert (refused["code"], refused["capability"]) == ("unsupported_capability", capability)
        assert fields["model"] in refused["message"]
        await client.send({"type": "conversations.list", "id": 2})
        assert (await client.recv())["conversations"] == []
        assert fake.stats.requests == requests_before
        await client.close()
