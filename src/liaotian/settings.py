"""The one typed settings object.

Read, highest priority first, from: keyword arguments, the environment (prefix ``LIAOTIAN_``;
provider keys and URLs use the SDKs' own variables such as ``DASHSCOPE_API_KEY``), a ``.env``
file is *not* read, then an optional TOML file (``liaotian serve --config FILE`` or
``LIAOTIAN_CONFIG``). Every field is documented in docs/configuration.md.

:func:`load_settings` raises :class:`~liaotian.errors.ConfigError` with a message that names
each wrong setting and how to fix it; nothing starts with invalid settings.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from liaotian.errors import ConfigError

StringList = Annotated[list[str], NoDecode]
"""A list of strings that an environment variable gives as JSON (``["a", "b"]``) or,
simpler, separated by commas (``a,b``): see :func:`split_list`."""


def split_list(value: Any) -> Any:
    """A :data:`StringList` from the environment: a JSON array, or comma-separated items
    (blank ones dropped); anything else (a TOML list, a default) is left to validation."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(
                'is neither a JSON list such as ["a", "b"] nor items separated by commas'
            ) from None
    return [item.strip() for item in text.split(",") if item.strip()]


SEED_DASHSCOPE_MODELS = (
    "qwen3-max",
    "qwen-max",
    "qwen-plus",
    "qwen-turbo",
    "qwen-flash",
    "deepseek-v3.1",
)
LOCAL_MODEL_ID = "smollm2-135m-instruct"
# A host name, or "*." and a domain (its subdomains).
ALLOWED_HOST = re.compile(r"^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
MIN_METRICS_TOKEN = 16


class OpenAIEndpoint(BaseModel):
    """A named OpenAI-compatible endpoint (``[[openai_endpoints]]`` in the TOML file).

    Its models are exposed as ``{name}/{model}``; ``models`` skips discovery when given.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    base_url: str
    api_key: SecretStr | None = None
    models: list[str] | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_http_url(value)


class ModelSettings(BaseModel):
    """What one model can do and how it is called (``[models."qwen-plus"]`` in the TOML file,
    or ``LIAOTIAN_MODELS`` as JSON). Unset fields keep the provider's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vision: bool | None = None
    thinking: bool | None = None
    thinking_default: bool | None = None
    thinking_fixed: bool | None = None
    search: bool | None = None
    reasoning_in_history: bool | None = None
    endpoint: Literal["text", "multimodal"] | None = None
    """DashScope only: the text-generation or the multimodal-generation endpoint."""


class Price(BaseModel):
    """What one model costs, per million tokens, in ``Settings.currency`` (``[prices."qwen-plus"]``
    in the TOML file, or ``LIAOTIAN_PRICES`` as JSON). liaotian ships no prices: the operator
    copies them from the provider's price page. Cached input tokens cost ``cached_input``
    (default: ``input``); reasoning tokens are output tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class Limits(BaseModel):
    """A role's quotas (``[role_limits.user]`` in the TOML file, or ``LIAOTIAN_ROLE_LIMITS``
    as JSON). None (the default): no limit. Days and months are UTC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens_per_day: int | None = Field(default=None, ge=0)
    messages_per_day: int | None = Field(default=None, ge=0)
    cost_per_month: float | None = Field(default=None, ge=0)
    concurrent_replies: int | None = Field(default=None, ge=1)


LIMIT_NAMES = ("tokens_per_day", "messages_per_day", "cost_per_month", "concurrent_replies")
ROLES = ("admin", "user")


def _check_http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


class Settings(BaseSettings):
    """All of liaotian's configuration. Immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix="LIAOTIAN_",
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        case_sensitive=False,
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8011, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///liaotian.db"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    default_model: str | None = None
    history_messages: int = Field(default=20, ge=1, le=1000)
    history_max_chars: int = Field(default=48_000, ge=100)
    history_images: int = Field(default=4, ge=0, le=32)
    """The newest images of a conversation that go back to a vision model with a request."""
    checkpoint_interval: float = Field(default=0.5, gt=0, le=60)
    max_frame_bytes: int = Field(default=1 << 20, ge=1024)
    max_message_chars: int = Field(default=32_000, ge=1)
    max_title_chars: int = Field(default=200, ge=1)
    reply_log_ttl: float = Field(default=300.0, ge=0)
    # Conversation titles after the first answer (liaotian.titles): "auto" asks the
    # conversation's own model unless it is the embedded one (then "first-line"), "off"
    # keeps the first message cut short, "first-line" its first line, anything else names
    # the model that writes titles.
    title_model: str = "auto"
    share_links: bool = True
    """Whether owners may share read-only snapshots at unguessable URLs."""
    # Usage, quotas and roles (liaotian.usage, docs/administration.md): the price table
    # (none by default: costs stay unknown), its currency, each role's quotas (an account's
    # own limits override them), the models each role may use ("*": any; a role absent:
    # any), and self sign-up ("off", or "approval": an admin approves each new account).
    prices: dict[str, Price] = Field(default_factory=dict)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    role_limits: dict[Literal["admin", "user"], Limits] = Field(default_factory=dict)
    role_models: dict[Literal["admin", "user"], list[str]] = Field(default_factory=dict)
    self_signup: Literal["off", "approval"] = "off"
    max_import_bytes: int = Field(default=64 << 20, ge=1024)
    """The largest file ``POST /conversations/import`` reads."""
    imports_per_minute: int = Field(default=10, ge=1)
    """Imports (``POST /conversations/import``) per owner per minute."""
    searches_per_minute: int = Field(default=120, ge=1)
    """``search`` frames per owner per minute."""
    # The OpenAI-compatible API (liaotian.openai_api): the largest request body (a chat
    # completion carries its whole history), and the browser origins allowed to call it
    # across sites (CORS; none by default: only non-browser clients and the own origin).
    max_api_body_bytes: int = Field(default=4 << 20, ge=1024, le=256 << 20)
    api_cors_origins: StringList = Field(default_factory=list)

    auth: Literal["auto", "required"] = "auto"
    # Open mode (no accounts): "shared", the page, the CLI and the Python client are one
    # owner (OPEN_OWNER in liaotian.gate); "per-client", each client id is its own owner.
    # Seed-protocol clients always own their conversations by their client_id.
    open_owner: Literal["shared", "per-client"] = "shared"
    allowed_origins: StringList = Field(default_factory=list)
    # DNS rebinding: Host names served besides loopback names, IP literals, the configured
    # host and allowed_origins' hosts (liaotian.auth.HostPolicy).
    allowed_hosts: StringList = Field(default_factory=list)
    # Who may read /metrics and /readyz without metrics_token (liaotian.auth).
    metrics_access: Literal["loopback", "any"] = "loopback"
    metrics_token: SecretStr | None = None
    session_lifetime: float = Field(default=30 * 24 * 3600.0, gt=0)
    # Sign-in (liaotian.guards): attempts per user name from one address, per address
    # whatever the names, and argon2 checks (64 MiB each) at once / waiting per process.
    login_attempts_per_minute: int = Field(default=10, ge=1)
    login_attempts_per_address_per_minute: int = Field(default=30, ge=1)
    password_checks_at_once: int = Field(default=2, ge=1)
    password_check_queue: int = Field(default=8, ge=0)
    credential_check_interval: float = Field(default=10.0, gt=0)

    max_connections: int = Field(default=10_000, ge=1)
    max_connections_per_owner: int = Field(default=32, ge=1)
    messages_per_minute: int = Field(default=30, ge=1)
    max_replies_per_owner: int = Field(default=8, ge=1)
    idle_timeout: float = Field(default=900.0, ge=0)
    ping_interval: float = Field(default=20.0, gt=0)
    ping_timeout: float = Field(default=20.0, gt=0)
    shutdown_grace: float = Field(default=10.0, ge=0)
    # Descriptor guards (liaotian.server): seconds a connection has to send a whole request
    # (0: no limit), and TCP connections per peer address (unset: 256 for remote peers,
    # loopback exempt; a number applies to every peer; 0: no cap).
    request_read_timeout: float = Field(default=10.0, ge=0)
    max_connections_per_address: int | None = Field(default=None, ge=0)
    # How long a reply's final write is retried while the database fails (liaotian.engine).
    final_write_timeout: float = Field(default=8.0, ge=0)
    # Image attachments (liaotian.images, liaotian.attachment_routes): the largest upload
    # (its body is held in memory), the most pixels decoded (at most Pillow's own bomb
    # threshold), the longest side kept, how long an image no message uses is kept,
    # uploads per owner per minute, and images decoded at once / waiting per process.
    max_attachment_bytes: int = Field(default=10 << 20, ge=1024, le=64 << 20)
    max_attachment_pixels: int = Field(default=40_000_000, ge=1, le=89_478_485)
    attachment_max_side: int = Field(default=2048, ge=16, le=8192)
    attachment_unused_ttl: float = Field(default=24 * 3600.0, gt=0)
    attachments_per_minute: int = Field(default=60, ge=1)
    attachment_decodes_at_once: int = Field(default=2, ge=1)
    attachment_decode_queue: int = Field(default=8, ge=0)

    redis_url: str | None = None
    redis_prefix: str = Field(default="liaotian", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    reply_lease: float = Field(default=15.0, gt=0)
    reply_stream_max_events: int = Field(default=10_000, ge=100)
    backplane_flush_interval: float = Field(default=0.05, ge=0, le=1)
    # What processes share replies, notices and cancels through (liaotian.backplane):
    # memory:// (one process) or redis://…; unset: redis_url if set, else memory://.
    backplane_url: str | None = None
    backplane_cancel_deadline: float = Field(default=30.0, gt=0)

    local_enabled: bool = True
    local_model_path: Path | None = None
    local_context_tokens: int = Field(default=2048, ge=128)
    local_threads: int | None = Field(default=None, ge=1)
    # The scripted provider for demos and tests (liaotian.providers.fake); off by default.
    fake_provider: bool = False
    fake_provider_script: str = ""

    dashscope_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DASHSCOPE_API_KEY", "dashscope_api_key")
    )
    dashscope_base_url: str = Field(
        default="https://dashscope.aliyuncs.com/api/v1",
        validation_alias=AliasChoices("DASHSCOPE_HTTP_BASE_URL", "dashscope_base_url"),
    )
    dashscope_models: StringList = Field(default_factory=lambda: list(SEED_DASHSCOPE_MODELS))

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    openai_endpoints: list[OpenAIEndpoint] = Field(default_factory=list)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    """Per model id (as clients name it): capabilities and DashScope endpoint overrides."""

    provider_connect_timeout: float = Field(default=10.0, gt=0)
    provider_first_token_timeout: float = Field(default=60.0, gt=0)
    provider_idle_timeout: float = Field(default=60.0, gt=0)
    provider_total_timeout: float = Field(default=600.0, gt=0)
    # Largest SSE event accepted from an upstream (liaotian.providers.sse).
    provider_max_event_bytes: int = Field(default=1 << 20, ge=1024)
    # Failing providers (liaotian.providers.resilience).
    provider_retries: int = Field(default=2, ge=0, le=10)
    provider_retry_backoff: float = Field(default=0.5, gt=0, le=60)
    provider_retry_max_wait: float = Field(default=10.0, ge=0)
    breaker_failures: int = Field(default=5, ge=0)
    breaker_cooldown: float = Field(default=30.0, gt=0)
    repetition_limit: int = Field(default=50, ge=0)
    repetition_max_unit: int = Field(default=64, ge=1, le=1024)

    @field_validator("dashscope_base_url")
    @classmethod
    def _dashscope_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("openai_base_url")
    @classmethod
    def _openai_url(cls, value: str | None) -> str | None:
        return None if not value else _check_http_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL such as redis://127.0.0.1:6379/0")
        return value

    @field_validator(
        "allowed_origins", "allowed_hosts", "dashscope_models", "api_cors_origins", mode="before"
    )
    @classmethod
    def _string_list(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("api_cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path
                or parts.query
                or parts.fragment
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: give scheme://host[:port] with nothing "
                    "after it, such as https://app.example.com (a browser sends exactly that; "
                    "'*' is not taken: name each site)"
                )
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        names = [name.strip().lower().removesuffix(".") for name in value]
        for name in names:
            if name != "*" and not ALLOWED_HOST.match(name):
                raise ValueError(
                    f"{name!r} is not a host name: give names such as chat.example.com or "
                    '*.example.com (no scheme, no port), or "*" for any host'
                )
        return names

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_METRICS_TOKEN:
            raise ValueError(
                f"must be at least {MIN_METRICS_TOKEN} characters (e.g. `openssl rand -hex 32`)"
            )
        return value

    @field_validator("fake_provider_script")
    @classmethod
    def _fake_script(cls, value: str) -> str:
        from liaotian.providers.fake import FakeScript  # the provider owns its syntax

        FakeScript.parse(value)  # raises ValueError naming the wrong directive
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @model_validator(mode="after")
    def _unique_endpoint_names(self) -> Settings:
        names = [endpoint.name for endpoint in self.openai_endpoints]
        if "openai" in names:
            raise ValueError(
                "openai_endpoints: the name 'openai' is reserved for OPENAI_BASE_URL; pick another"
            )
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"openai_endpoints names must be unique, repeated: {duplicates}")
        return self

    @property
    def loopback(self) -> bool:
        """True when the server listens on a loopback address only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def dashscope_enabled(self) -> bool:
        return self.dashscope_api_key is not None and bool(
            self.dashscope_api_key.get_secret_value()
        )

    @property
    def effective_backplane_url(self) -> str:
        """The backplane's URL: ``backplane_url``, else ``redis_url``, else ``memory://``."""
        return self.backplane_url or self.redis_url or "memory://"

    @property
    def multiprocess(self) -> bool:
        """Whether processes share a backplane (then each is one of several)."""
        return not self.effective_backplane_url.startswith("memory:")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
}


def model_id_for(model_path: Path | None) -> str:
    """The local model's id: LOCAL_MODEL_ID, or the GGUF file's stem, lowercased and dashed."""
    if model_path is None:
        return LOCAL_MODEL_ID
    model_id = re.sub(r"[^a-z0-9._-]+", "-", model_path.stem.lower()).strip("-.")
    return model_id or "local"


def normalize_database_url(url: str) -> str:
    """Map plain ``sqlite://`` / ``postgresql://`` URLs to their async drivers."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must be a URL such as sqlite:///liaotian.db or postgresql://host/db")
    if scheme in _DRIVERS:
        return f"{_DRIVERS[scheme]}://{rest}"
    if scheme in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        return url
    raise ValueError(
        f"unsupported database {scheme!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from the environment and ``config_file`` (or ``$LIAOTIAN_CONFIG``).

    Raises ConfigError naming every invalid setting and where it came from.
    """
    path = config_file or os.environ.get("LIAOTIAN_CONFIG")
    settings_cls: type[Settings] = Settings
    if path:
        toml_path = Path(path)
        if not toml_path.is_file():
            raise ConfigError(
                f"config file {toml_path} does not exist (--config / LIAOTIAN_CONFIG)"
            )
        settings_cls = type(
            "FileSettings",
            (Settings,),
            {
                "model_config": SettingsConfigDict(
                    **{**Settings.model_config, "toml_file": toml_path}
                )
            },
        )
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except SettingsError as exc:  # a value the environment gives that is not JSON
        raise ConfigError(_explain_unparsed(exc)) from None
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


SECRET_PARTS = ("key", "token", "password", "secret")
"""Settings whose value is never repeated in an error message."""


def _given(field: str, value: Any) -> str:
    """How an error shows the value given: shortened, and never a secret's."""
    if any(part in field for part in SECRET_PARTS):
        return "(hidden)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _explain(exc: ValidationError) -> str:
    lines = ["invalid settings:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        env_name = _env_name(field)
        given = f"; given {_given(field, error['input'])}" if "input" in error else ""
        lines.append(
            f"  - {field}: {error['msg']}{given} (set {env_name} or '{field}' in the config file)"
        )
    return "\n".join(lines)


def _explain_unparsed(exc: SettingsError) -> str:
    """The message for an environment value pydantic-settings could not parse as JSON."""
    found = re.search(r'field "?([a-z0-9_]+)"?', str(exc))
    field = found.group(1) if found else "settings"
    env_name = _env_name(field)
    value = os.environ.get(env_name, os.environ.get(env_name.lower()))
    return (
        f"invalid settings:\n  - {field}: {env_name} must be JSON here "
        f"(for example {FORMS.get(field, '[...]')}); given {_given(field, value)}"
    )


FORMS = {
    "openai_endpoints": '[{"name": "ollama", "base_url": "http://127.0.0.1:11434/v1"}]',
}
"""An example of the JSON form of the settings that only take JSON from the environment."""


def _env_name(field: str) -> str:
    top = field.split(".")[0]
    aliases = {
        "dashscope_api_key": "DASHSCOPE_API_KEY",
        "dashscope_base_url": "DASHSCOPE_HTTP_BASE_URL",
        "openai_api_key": "OPENAI_API_KEY",
        "openai_base_url": "OPENAI_BASE_URL",
    }
    return aliases.get(top, f"LIAOTIAN_{top.upper()}")
