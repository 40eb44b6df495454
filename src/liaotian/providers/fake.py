"""A scripted provider shipped in the package, for demos, client development and tests.

Off by default; ``fake_provider = true`` (``LIAOTIAN_FAKE_PROVIDER=1``) adds the provider
``fake`` serving one model, :data:`FAKE_MODEL_ID` (``fake-echo``). It registers exactly
like the built-in providers, needs no network or key, and behaves the same on every run.

What it answers is scripted by the last user message. A message whose first line starts
with ``/fake`` takes that line as directives, ``key=value`` words separated by spaces::

    /fake tokens=200 delay_ms=20
    /fake first_delay_ms=1500 delay_ms=100
    Streams this text slowly.
    /fake error=rate_limited
    /fake tokens=50 error=unavailable after=10
    /fake hang after=3

``tokens=N``
    Reply with N tokens ``"t0 "``, ``"t1 "``, … (at most 100,000) instead of the echo.
``delay_ms=MS`` / ``first_delay_ms=MS``
    Wait MS milliseconds between two tokens / before the first one (at most 60,000).
``error=CODE``
    Fail with the provider error of that code: ``auth``, ``rate_limited``,
    ``unavailable``, ``bad_request``, ``timeout``, ``interrupted`` or ``repetition`` (the
    ``provider_`` prefix may be given too). ``retry_after=S`` goes with ``rate_limited``.
``hang`` (or ``hang=1``)
    Stop sending and wait until the reply is cancelled (or ``provider_total_timeout``).
``after=K``
    Fail or hang after K tokens (default 0: before the first); at the end when the reply
    has fewer.
``finish=REASON``
    The finish reason of a reply that ends normally (default ``stop``).
``think=N``
    Think first: N reasoning tokens ``"r0 "``, ``"r1 "``, … (at most 100,000) before the
    answer, when the request has thinking on (``fake-echo`` does not think by default).
    Delays apply to them as to answer tokens; ``after`` counts answer tokens only.
``sources=K``
    When the request asks for web search: one Sources part of K results (at most 50;
    ``https://example.com/1`` …, titles ``Source 1`` …, site ``example.com``) before the
    answer, and the answer ends with the citations ``" [1]"`` … ``" [K]"``, a token each.

Without ``tokens`` the reply echoes the message, a word per token (whitespace kept), minus
its ``/fake`` line when other lines follow it; when the message has images the echo starts
with ``(1 image) `` / ``(N images) ``. A request's ``max_tokens`` ends the reply after that
many tokens, finish reason ``length``. Usage counts the whitespace-separated words of all
messages as input tokens and the tokens sent (reasoning included) as output tokens, the
reasoning ones also as reasoning tokens.

``fake-echo`` claims every capability (vision, thinking — off by default — and search), so
clients can exercise every part of a reply against it.
``fake_provider_script`` holds directives (without ``/fake``) applied to every reply; a
message's own directives override them key by key. A malformed script is rejected: in the
settings at start-up, in a message with ``provider_bad_request``.

Errors are raised like a real provider's, so the registry treats them the same: one
failing before the first token with ``rate_limited``, ``unavailable`` or ``interrupted`` is
retried (``provider_retries``) and counts toward the ``fake`` circuit breaker. Cancelling
the reply stops it between two tokens (every token is a suspension point, even without a
delay, so a long fast reply never holds the event loop).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

from liaotian.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderInterrupted,
    ProviderRateLimited,
    ProviderRepetition,
    ProviderTimeout,
    ProviderUnavailable,
)
from liaotian.providers.base import (
    Capabilities,
    ChatMessage,
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    Reasoning,
    Source,
    Sources,
    StreamItem,
    Usage,
)
from liaotian.providers.registry import ProviderContext, register_provider

FAKE_MODEL_ID = "fake-echo"
PREFIX = "/fake"
MAX_TOKENS = 100_000
MAX_DELAY_MS = 60_000
MAX_SOURCES = 50
CAPABILITIES = Capabilities(vision=True, thinking=True, thinking_default=False, search=True)
SYNTAX = (
    "/fake [tokens=N] [delay_ms=MS] [first_delay_ms=MS] [error=CODE] [retry_after=S] "
    "[hang] [after=K] [finish=REASON] [think=N] [sources=K]"
)

_ERRORS: dict[str, type[ProviderError]] = {
    cls.code.removeprefix("provider_"): cls
    for cls in (
        ProviderAuthError,
        ProviderRateLimited,
        ProviderUnavailable,
        ProviderBadRequest,
        ProviderTimeout,
        ProviderInterrupted,
        ProviderRepetition,
    )
}
_FINISH = re.compile(r"^[a-z_]{1,32}$")
# Words with the whitespace before them (the last one with that after it too): joined,
# they give back the text exactly.
_WORD = re.compile(r"\s*\S+(?:\s+$)?|\s+$")


class FakeScriptError(ValueError):
    """A script that cannot be read; the message names the directive and the syntax."""


@dataclass(frozen=True, slots=True)
class FakeScript:
    """What one reply of the fake provider does; see the module docstring."""

    tokens: int | None = None
    delay_ms: int = 0
    first_delay_ms: int = 0
    error: str | None = None
    retry_after: float | None = None
    hang: bool = False
    after: int = 0
    finish: str = "stop"
    think: int = 0
    sources: int = 0

    KEYS: ClassVar[frozenset[str]] = frozenset(
        {
            "tokens",
            "delay_ms",
            "first_delay_ms",
            "error",
            "retry_after",
            "hang",
            "after",
            "finish",
            "think",
            "sources",
        }
    )

    @staticmethod
    def directives(text: str) -> dict[str, str]:
        """The ``key=value`` words of ``text`` (a bare word is ``word=1``), checked against
        the known keys. Raises FakeScriptError."""
        found: dict[str, str] = {}
        for word in text.split():
            key, sep, value = word.partition("=")
            if key not in FakeScript.KEYS:
                raise FakeScriptError(f"unknown directive {key!r}; the syntax is {SYNTAX}")
            found[key] = value if sep else "1"
        return found

    @classmethod
    def parse(cls, text: str, defaults: str = "") -> FakeScript:
        """The script of directive words ``text`` over those of ``defaults`` (both without
        ``/fake``). Raises FakeScriptError for an unknown key or a value out of range."""
        values = {**cls.directives(defaults), **cls.directives(text)}
        error = values.get("error")
        if error is not None:
            error = error.removeprefix("provider_")
            if error not in _ERRORS:
                raise FakeScriptError(
                    f"error={values['error']}: use one of {', '.join(sorted(_ERRORS))}"
                )
        finish = values.get("finish", "stop")
        if not _FINISH.match(finish):
            raise FakeScriptError(f"finish={finish}: use a word of a-z and _, e.g. stop")
        tokens = values.get("tokens")
        retry_after = values.get("retry_after")
        return cls(
            tokens=None if tokens is None else _int("tokens", tokens, MAX_TOKENS),
            delay_ms=_int("delay_ms", values.get("delay_ms", "0"), MAX_DELAY_MS),
            first_delay_ms=_int("first_delay_ms", values.get("first_delay_ms", "0"), MAX_DELAY_MS),
            error=error,
            retry_after=None if retry_after is None else _seconds(retry_after),
            hang=_int("hang", values.get("hang", "0"), 1) == 1,
            after=_int("after", values.get("after", "0"), MAX_TOKENS),
            finish=finish,
            think=_int("think", values.get("think", "0"), MAX_TOKENS),
            sources=_int("sources", values.get("sources", "0"), MAX_SOURCES),
        )


def _int(key: str, value: str, most: int) -> int:
    if not value.isdigit() or int(value) > most:
        raise FakeScriptError(f"{key}={value}: give a whole number from 0 to {most}")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise FakeScriptError(f"retry_after={value}: give seconds from 0 to 3600")
    return seconds


def split_message(text: str) -> tuple[str, str]:
    """``(directives, text to echo)`` of a user message: its ``/fake`` line, if it starts
    with one, and the rest (the whole message when nothing follows that line)."""
    after = text[len(PREFIX) : len(PREFIX) + 1]
    if not text.startswith(PREFIX) or (after and not after.isspace()):
        return "", text
    line, _, rest = text.partition("\n")
    return line[len(PREFIX) :], rest if rest.strip() else text


def reply_tokens(script: FakeScript, echo: str, *, search: bool = False) -> list[str]:
    """The answer tokens of the reply, before any ``max_tokens`` cut; with ``search`` the
    citations of ``sources=K`` end it."""
    if script.tokens is not None:
        tokens = [f"t{i} " for i in range(script.tokens)]
    else:
        tokens = _WORD.findall(echo)
    if search:
        tokens += [f" [{i}]" for i in range(1, script.sources + 1)]
    return tokens


def reasoning_tokens(script: FakeScript) -> list[str]:
    """The reasoning tokens of a reply with thinking on."""
    return [f"r{i} " for i in range(script.think)]


def fake_sources(count: int) -> Sources:
    """The search results of ``sources=count``."""
    return Sources(
        tuple(
            Source(
                index=i,
                url=f"https://example.com/{i}",
                title=f"Source {i}",
                site="example.com",
            )
            for i in range(1, count + 1)
        )
    )


def image_note(count: int) -> str:
    """What the echo starts with when the message has ``count`` images."""
    if not count:
        return ""
    return "(1 image) " if count == 1 else f"({count} images) "


class FakeProvider(Provider):
    """Serves :data:`FAKE_MODEL_ID` by following the script of each request."""

    kind = "fake"

    def __init__(self, default_script: str = "") -> None:
        super().__init__("fake")
        self._defaults = default_script
        FakeScript.parse("", default_script)  # fail now, not at the first reply
        self._models = [
            ModelInfo(
                id=FAKE_MODEL_ID,
                provider=self.name,
                upstream=FAKE_MODEL_ID,
                capabilities=CAPABILITIES,
            )
        ]

    def models(self) -> list[ModelInfo]:
        return list(self._models)

    def status(self) -> dict[str, object]:
        return {**super().status(), "script": self._defaults}

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Play the request's script: reasoning deltas (thinking on), Sources (search on),
        text deltas, then one Finish; or its ProviderError (ProviderBadRequest for a
        malformed script). Cancelling stops it between tokens."""
        return self._play(request)

    async def _play(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        last = _last_user(request.messages)
        directives, echo = split_message(last.content if last is not None else "")
        try:
            script = FakeScript.parse(directives, self._defaults)
        except FakeScriptError as exc:
            raise ProviderBadRequest(f"{self.name}: {exc}") from None
        images = len(last.images) if last is not None else 0
        search = request.search and script.sources > 0
        tokens = reply_tokens(script, image_note(images) + echo, search=search)
        thinking = CAPABILITIES.thinking_default if request.thinking is None else request.thinking
        thoughts = reasoning_tokens(script) if thinking else []
        finish = script.finish
        if request.max_tokens is not None and request.max_tokens < len(tokens):
            tokens, finish = tokens[: request.max_tokens], "length"
        stops = script.error is not None or script.hang
        count = min(script.after, len(tokens)) if stops else len(tokens)
        # Every token waits, even for 0 ms: the suspension point where a cancel lands and
        # other connections get their turn.
        for index, thought in enumerate(thoughts):
            await asyncio.sleep((script.delay_ms if index else script.first_delay_ms) / 1000)
            if request.stream:
                yield Reasoning(thought)
        if thoughts and not request.stream:
            yield Reasoning("".join(thoughts))
        if search:
            yield fake_sources(script.sources)
        if not count and not thoughts:
            await asyncio.sleep(script.first_delay_ms / 1000)
        for index in range(count):
            first = not index and not thoughts
            await asyncio.sleep((script.first_delay_ms if first else script.delay_ms) / 1000)
            if request.stream:
                yield tokens[index]
        if count and not request.stream:
            # All or nothing, after the time the streamed reply would have taken.
            yield "".join(tokens[:count])
        if script.hang:
            await asyncio.get_running_loop().create_future()  # until cancelled
        if script.error is not None:
            message = f"{self.name}: scripted error {script.error} after {count} tokens"
            if script.error == "rate_limited":
                raise ProviderRateLimited(message, retry_after=script.retry_after)
            raise _ERRORS[script.error](message)
        input_tokens = sum(len(message.content.split()) for message in request.messages)
        usage = Usage(input_tokens, count + len(thoughts), len(thoughts) if thoughts else None)
        yield Finish(finish, usage)


def _last_user(messages: list[ChatMessage]) -> ChatMessage | None:
    for message in reversed(messages):
        if message.role == "user":
            return message
    return None


@register_provider("fake")
def fake_providers(ctx: ProviderContext) -> list[Provider]:
    """The fake provider when ``fake_provider`` is on; nothing otherwise."""
    if not ctx.settings.fake_provider:
        return []
    return [FakeProvider(ctx.settings.fake_provider_script)]
