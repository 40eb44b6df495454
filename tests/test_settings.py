"""Settings: lists in either form, and errors that name the variable, the value and the form."""

from __future__ import annotations

from pathlib import Path

import pytest

from liaotian.errors import ConfigError
from liaotian.settings import load_settings


def test_a_list_setting_takes_comma_separated_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LIAOTIAN_ALLOWED_ORIGINS=a,b`` is the list [a, b] (spaces and blanks dropped)."""
    monkeypatch.setenv("LIAOTIAN_ALLOWED_ORIGINS", "http://127.0.0.1:9000, https://chat.example,")
    settings = load_settings()
    assert settings.allowed_origins == ["http://127.0.0.1:9000", "https://chat.example"]


def test_a_list_setting_takes_json_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON form keeps working, as do TOML lists."""
    monkeypatch.setenv("LIAOTIAN_ALLOWED_HOSTS", '["chat.example", "*.example.org"]')
    assert load_settings().allowed_hosts == ["chat.example", "*.example.org"]


def test_a_list_setting_from_a_toml_file(tmp_path: Path) -> None:
    """A TOML list is a list, whatever the environment's forms."""
    config = tmp_path / "liaotian.toml"
    config.write_text('dashscope_models = ["qwen-plus", "qwen-max"]\n')
    assert load_settings(config).dashscope_models == ["qwen-plus", "qwen-max"]


def test_a_broken_list_names_the_variable_the_value_and_the_forms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A value that is neither form is refused with what was given and what is expected."""
    monkeypatch.setenv("LIAOTIAN_ALLOWED_HOSTS", "[chat.example")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = refused.value.message
    assert "LIAOTIAN_ALLOWED_HOSTS" in message
    assert "'[chat.example'" in message
    assert "separated by commas" in message


def test_a_json_only_setting_names_the_variable_the_value_and_an_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A setting that only JSON can say, given something else: no "EnvSettingsSource",
    no "config file None", but the variable, the value and an example."""
    monkeypatch.setenv("LIAOTIAN_OPENAI_ENDPOINTS", "ollama")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = refused.value.message
    assert "LIAOTIAN_OPENAI_ENDPOINTS must be JSON" in message
    assert "given 'ollama'" in message
    assert '"base_url"' in message
    assert "EnvSettingsSource" not in message
    assert "None" not in message


def test_a_wrong_value_is_shown_but_never_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors repeat the value given, except for keys, tokens and passwords."""
    monkeypatch.setenv("LIAOTIAN_PORT", "http")
    monkeypatch.setenv("LIAOTIAN_METRICS_TOKEN", "short-secret")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = refused.value.message
    assert "given 'http'" in message
    assert "short-secret" not in message
    assert "metrics_token" in message
