"""Failing providers: retries before the first token, timeouts, broken streams, loops and
the circuit breaker — through a real server and the fake upstream, plus unit specs of the
breaker and the repetition guard."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaotian.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderRepetition,
    ProviderUnavailable,
)
from liaotian.providers import (
    ChatMessage,
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    ProviderContext,
    ProviderRegistry,
    StreamItem,
)
from liaotian.providers.dashscope import dashscope_providers
from liaotian.providers.resilience import (
    CHECK_EVERY,
    MIN_RUN_CHARS,
    BreakerState,
    CircuitBreaker,
    RepetitionGuard,
    ResiliencePolicy,
    resilient_stream,
)
from tests.conftest import SettingsFactory
from tests.fake_upstream import DASHSCOPE_PATH, FakeUpstream, RecordedRequest, expected_reply
from tests.server_harness import RunningServer, run_server
from tests.wsclient import Frame, RawClient, of_type, reply_text

# Two retries, ~10 ms apart, unless a test says otherwise.
FAST = {"provider_retries": 2, "provider_retry_backoff": 0.01}


@asynccontextmanager
async def serving(make_settings: SettingsFactory, **overrides: Any) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings(**{**FAST, **overrides})) as running:
        yield running


@asynccontextmanager
async def connected(server: RunningServer) -> AsyncIterator[RawClient]:
    client = await RawClient.open(f"{server.ws_url}?client_id=alice")
    try:
        assert (await client.recv())["type"] == "hello"
        yield client
    finally:
        await client.close()


async def chat(client: RawClient, message: str, **fields: object) -> list[Frame]:
    """Send a message; its frames from reply.started to reply.done."""
    await client.send({"type": "chat.send", "id": "send", "message": message, **fields})
    [*_, started] = await client.until(
        lambda f: f.get("id") == "send" and f["type"] in ("reply.started", "error")
    )
    assert started["type"] == "reply.started", started
    done = of_type("reply.done", message_id=started["message_id"])
    return [started, *await client.until(done)]


async def ask(server: RunningServer, message: str, **fields: object) -> list[Frame]:
    async with connected(server) as client:
        return await chat(client, message, **fields)


async def stored_text(server: RunningServer, frames: list[Frame]) -> str:
    info = await server.services.store.reply_status("alice", frames[0]["message_id"])
    assert info is not None
    return info.content


def attempts(fake: FakeUpstream, prompt: str) -> list[RecordedRequest]:
    """The DashScope requests the fake received for ``prompt``."""
    return [
        request
        for request in fake.requests
        if request.path == DASHSCOPE_PATH
        and request.body["input"]["messages"][-1]["content"] == prompt
    ]


def breaker_of(server: RunningServer, provider: str) -> dict[str, Any]:
    status = server.services.providers.status()[provider]
    assert isinstance(status, dict)
    breaker: dict[str, Any] = status["breaker"]
    return breaker


def error_of(frames: list[Frame]) -> tuple[str, str]:
    done = frames[-1]
    assert done["status"] == "error", done
    return done["error"]["code"], done["error"]["message"]


# --- retries before the first token


async def test_rate_limit_is_retried_after_retry_after_then_answered(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """Two 429s with Retry-After 0.2 s are retried no sooner than asked; the third answers."""
    prompt = "busy? [fault=429_then_ok=2] [retry_after=0.2]"
    async with serving(make_settings) as server:
        frames = await ask(server, prompt)
    assert frames[-1]["status"] == "completed"
    assert reply_text(frames) == expected_reply(prompt)
    sent = [request.received_at for request in attempts(fake, prompt)]
    assert len(sent) == 3
    assert all(later - earlier >= 0.2 for earlier, later in itertools.pairwise(sent))


async def test_persistent_rate_limit_ends_with_the_error_after_the_retries(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """A 429 every time: 1 + provider_retries requests, then provider_rate_limited."""
    prompt = "[fault=429] [retry_after=0.05]"
    async with serving(make_settings, provider_retries=2) as server:
        code, message = error_of(await ask(server, prompt))
    assert code == "provider_rate_limited"
    assert "gave up after 3 attempts" in message
    assert len(attempts(fake, prompt)) == 3


async def test_retry_after_beyond_the_max_wait_fails_at_once(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """Retry-After over provider_retry_max_wait is not waited for: one request, a clear error."""
    prompt = "[fault=429] [retry_after=30]"
    async with serving(make_settings, provider_retry_max_wait=5) as server:
        code, message = error_of(await ask(server, prompt))
    assert code == "provider_rate_limited"
    assert "asks to wait 30 s" in message
    assert len(attempts(fake, prompt)) == 1


async def test_server_error_is_retried_then_answered(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """A 503 before the first token is retried; the retry's answer is the reply."""
    prompt = "flaky [fault=503_then_ok=1]"
    async with serving(make_settings) as server:
        frames = await ask(server, prompt)
    assert frames[-1]["status"] == "completed"
    assert reply_text(frames) == expected_reply(prompt)
    assert len(attempts(fake, prompt)) == 2


async def test_connection_reset_before_the_first_token_is_retried(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """A stream cut before any token is retried, then reported as provider_interrupted."""
    prompt = "[fault=drop_after=0]"
    async with serving(make_settings, provider_retries=2) as server:
        code, _ = error_of(await ask(server, prompt))
    assert code == "provider_interrupted"
    assert fake.stats.drops == 3


async def test_zero_retries_sends_one_request(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """provider_retries = 0 turns retrying off."""
    async with serving(make_settings, provider_retries=0) as server:
        code, message = error_of(await ask(server, "[fault=500]"))
    assert code == "provider_unavailable"
    assert "attempts" not in message
    assert len(attempts(fake, "[fault=500]")) == 1


async def test_cancel_during_a_retry_wait_ends_the_reply_cancelled(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """Cancelling while waiting to retry ends the reply at once, with no further request."""
    prompt = "[fault=500]"
    async with (
        serving(make_settings, provider_retry_backoff=30, provider_retry_max_wait=60) as server,
        connected(server) as client,
    ):
        await client.send({"type": "chat.send", "id": "send", "message": prompt})
        [*_, started] = await client.until(of_type("reply.started"))
        await fake.wait_for(lambda stats: stats.requests >= 1)
        await client.send({"type": "chat.cancel", "message_id": started["message_id"]})
        frames = await client.until(of_type("reply.done"), within=5)
    assert frames[-1]["status"] == "cancelled"
    assert len(attempts(fake, prompt)) == 1


def refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_refused_connection_is_retried_with_exponential_backoff(
    make_settings: SettingsFactory,
) -> None:
    """Connection refused is retried; each wait starts at twice the last, jitter on top."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    settings = make_settings(dashscope_base_url=f"http://127.0.0.1:{refused_port()}/api/v1")
    policy = ResiliencePolicy(retries=3, backoff=1.0, max_wait=60, sleep=sleep)
    async with aiohttp.ClientSession() as http:
        [provider] = dashscope_providers(ProviderContext(settings, http))
        breaker = CircuitBreaker("dashscope", failures=5, cooldown=30)
        stream = resilient_stream(provider, request("hi"), breaker, policy)
        with pytest.raises(ProviderUnavailable, match=r"cannot connect.*gave up after 4 attempts"):
            await anext(stream)
    assert len(waits) == 3
    for number, wait in enumerate(waits):
        assert 2**number <= wait <= 2**number + 1


async def test_backoff_is_capped_by_the_max_wait() -> None:
    """No wait exceeds provider_retry_max_wait, however many retries."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    provider = ScriptedProvider([ProviderUnavailable("down")] * 6)
    policy = ResiliencePolicy(retries=5, backoff=2.0, max_wait=5.0, sleep=sleep)
    with pytest.raises(ProviderUnavailable):
        await collect(resilient_stream(provider, request("hi"), breaker_for(), policy))
    assert len(waits) == 5
    assert max(waits) == 5.0


async def test_errors_of_a_working_provider_are_not_retried() -> None:
    """A bad request (the provider answered) is raised after one attempt."""
    provider = ScriptedProvider([ProviderBadRequest("no"), ["never"]])
    with pytest.raises(ProviderBadRequest):
        await collect(resilient_stream(provider, request("hi"), breaker_for(), quick_policy()))
    assert provider.calls == 1


# --- after the first token: the text stays, the reply ends with the error


@pytest.mark.parametrize(
    ("model", "fault", "code"),
    [
        ("qwen-plus", "[fault=drop_after=3]", "provider_interrupted"),
        ("qwen-plus", "[fault=stream_error]", "provider_bad_request"),
        ("fake-chat", "[fault=stream_error]", "provider_unavailable"),
        ("qwen-plus", "[fault=malformed]", "provider_unavailable"),
    ],
    ids=["reset", "dashscope-error-event", "openai-error-event", "malformed-sse"],
)
async def test_failure_mid_answer_keeps_the_text_and_is_not_retried(
    make_settings: SettingsFactory, fake: FakeUpstream, model: str, fault: str, code: str
) -> None:
    """A stream that breaks after its first token ends with its code; the text is kept."""
    prompt = f"[tokens=10] {fault}"
    async with serving(make_settings) as server:
        frames = await ask(server, prompt, model=model)
        assert error_of(frames)[0] == code
        streamed = reply_text(frames)
        assert streamed.startswith("t0 ")
        assert await stored_text(server, frames) == streamed
    chat_requests = [r for r in fake.requests if r.path != "/v1/models"]
    assert len(chat_requests) == 1


# --- timeouts


@pytest.fixture
def unresponsive_port() -> Iterator[int]:
    """A port whose accept queue is full: connecting to it hangs until a timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


async def test_connect_timeout_ends_the_reply_with_provider_timeout(
    make_settings: SettingsFactory, unresponsive_port: int
) -> None:
    """An upstream that never accepts the connection: provider_timeout, not retried."""
    async with serving(
        make_settings,
        dashscope_base_url=f"http://127.0.0.1:{unresponsive_port}/api/v1",
        provider_connect_timeout=0.3,
    ) as server:
        frames = await ask(server, "anyone?")
        assert error_of(frames)[0] == "provider_timeout"
        assert frames[-1]["duration_ms"] < 2000
        assert await stored_text(server, frames) == ""


async def test_first_token_timeout_ends_the_reply_with_provider_timeout(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """Headers but no token within provider_first_token_timeout: provider_timeout, once."""
    async with serving(make_settings, provider_first_token_timeout=0.3) as server:
        frames = await ask(server, "[fault=hang]")
        code, message = error_of(frames)
        assert await stored_text(server, frames) == ""
    assert code == "provider_timeout"
    assert "no first token" in message
    assert len(attempts(fake, "[fault=hang]")) == 1


async def test_silence_after_the_first_token_ends_the_reply_with_the_text_kept(
    make_settings: SettingsFactory,
) -> None:
    """A gap over provider_idle_timeout after a token: provider_timeout, the token kept."""
    async with serving(make_settings, provider_idle_timeout=0.3) as server:
        frames = await ask(server, "[tokens=5] [delay=5000]")
        code, message = error_of(frames)
        assert await stored_text(server, frames) == reply_text(frames) == "t0 "
    assert code == "provider_timeout"
    assert "sent nothing for 0.3s" in message


async def test_total_timeout_ends_a_long_reply_with_the_text_kept(
    make_settings: SettingsFactory,
) -> None:
    """An answer still streaming at provider_total_timeout ends provider_timeout, text kept."""
    async with serving(make_settings, provider_total_timeout=0.5) as server:
        frames = await ask(server, "[tokens=1000] [delay=10]")
        code, _ = error_of(frames)
        streamed = reply_text(frames)
        assert await stored_text(server, frames) == streamed
    assert code == "provider_timeout"
    assert streamed.startswith("t0 t1 ")


# --- an answer that loops


async def test_endless_repetition_is_stopped_with_the_text_kept(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """The same chunk forever: provider_repetition, the upstream closed, the text kept."""
    async with serving(make_settings, repetition_limit=50) as server:
        frames = await ask(server, "loop [fault=repeat]")
        code, message = error_of(frames)
        streamed = reply_text(frames)
        assert await stored_text(server, frames) == streamed
    assert code == "provider_repetition"
    assert "'echo'" in message
    assert streamed.endswith("echo" * 64)
    await fake.wait_for(lambda stats: stats.disconnects >= 1)


async def test_repetition_limit_zero_turns_the_guard_off(make_settings: SettingsFactory) -> None:
    """With repetition_limit = 0 a looping answer runs until another limit stops it."""
    async with serving(make_settings, repetition_limit=0, provider_total_timeout=0.3) as server:
        code, _ = error_of(await ask(server, "loop [fault=repeat] [delay=1]"))
    assert code == "provider_timeout"


# --- the circuit breaker, through the server


async def test_breaker_opens_and_fails_fast_without_calling_the_provider(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """After breaker_failures failed replies, the next fails fast saying when it retries."""
    async with serving(make_settings, provider_retries=0, breaker_failures=2) as server:
        for _ in range(2):
            error_of(await ask(server, "[fault=500]"))
        before = fake.stats.requests
        code, message = error_of(await ask(server, "hello"))
        assert fake.stats.requests == before
        breaker = breaker_of(server, "dashscope")
    assert code == "provider_unavailable"
    assert "dashscope is failing" in message
    assert "tried again in" in message
    assert (breaker["state"], breaker["failures"]) == ("open", 2)
    assert breaker["retry_at"] is not None


async def test_open_breaker_shows_in_readiness_and_spares_other_providers(
    make_settings: SettingsFactory,
) -> None:
    """/readyz reports each provider's breaker; another provider's models still answer."""
    async with serving(make_settings, provider_retries=0, breaker_failures=1) as server:
        error_of(await ask(server, "[fault=500]"))
        other = await ask(server, "still there?", model="fake-chat")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.http_url}/readyz") as response,
        ):
            providers = (await response.json())["checks"]["providers"]
    assert other[-1]["status"] == "completed"
    assert providers["dashscope"]["breaker"]["state"] == "open"
    assert providers["openai"]["breaker"] == {"state": "closed", "failures": 0, "retry_at": None}


async def test_a_successful_probe_after_the_cooldown_closes_the_breaker(
    make_settings: SettingsFactory,
) -> None:
    """Once the cool-down is over one reply goes through; its success closes the breaker."""
    async with serving(
        make_settings, provider_retries=0, breaker_failures=1, breaker_cooldown=0.2
    ) as server:
        error_of(await ask(server, "[fault=500]"))
        assert breaker_of(server, "dashscope")["state"] == "open"
        await asyncio.sleep(0.25)  # past the cool-down: a deadline, not a race
        assert breaker_of(server, "dashscope")["state"] == "half-open"
        frames = await ask(server, "back?")
        assert frames[-1]["status"] == "completed"
        assert breaker_of(server, "dashscope")["state"] == "closed"


async def test_a_reply_counts_once_however_many_attempts_it_took(
    make_settings: SettingsFactory,
) -> None:
    """The breaker counts failed replies, not attempts: one reply of 3 attempts is 1."""
    async with serving(make_settings, provider_retries=2, breaker_failures=2) as server:
        error_of(await ask(server, "[fault=500]"))
        breaker = breaker_of(server, "dashscope")
    assert (breaker["state"], breaker["failures"]) == ("closed", 1)


async def test_errors_of_a_working_provider_do_not_open_the_breaker(
    make_settings: SettingsFactory,
) -> None:
    """A rejected request means the provider answers: the breaker stays closed."""
    async with serving(make_settings, breaker_failures=1) as server:
        assert error_of(await ask(server, "[fault=400]"))[0] == "provider_bad_request"
        assert (await ask(server, "fine"))[-1]["status"] == "completed"
        assert breaker_of(server, "dashscope")["state"] == "closed"


# --- the wrapper with a scripted provider


class ScriptedProvider(Provider):
    """Each call plays the next script: an error raised at once, or chunks then a Finish."""

    kind = "scripted"

    def __init__(self, scripts: list[ProviderError | list[str]]) -> None:
        super().__init__("scripted")
        self.scripts = list(scripts)
        self.calls = 0

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("scripted", self.name, "scripted")]

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        self.calls += 1
        script = self.scripts.pop(0)
        if isinstance(script, ProviderError):
            raise script
        for chunk in script:
            yield chunk
        yield Finish("stop")


def request(prompt: str) -> ChatRequest:
    return ChatRequest(model="fake-chat", messages=[ChatMessage("user", prompt)])


def quick_policy(**overrides: Any) -> ResiliencePolicy:
    async def no_sleep(seconds: float) -> None:
        pass

    return ResiliencePolicy(**{"sleep": no_sleep, **overrides})


def breaker_for(failures: int = 5) -> CircuitBreaker:
    return CircuitBreaker("scripted", failures=failures, cooldown=30)


async def collect(
    stream: AsyncIterator[StreamItem], into: list[StreamItem] | None = None
) -> list[StreamItem]:
    """Every item of ``stream``, appended to ``into`` as they come (kept if it raises)."""
    items = [] if into is None else into
    async for item in stream:
        items.append(item)
    return items


async def test_registry_stream_retries_and_passes_items_through() -> None:
    """ProviderRegistry.stream retries a failed start and then yields the provider's items."""
    provider = ScriptedProvider([ProviderRateLimited("slow down", retry_after=0), ["a", "b"]])
    registry = ProviderRegistry([provider])
    registry.policy = quick_policy()
    assert await collect(registry.stream(provider, request("hi"))) == ["a", "b", Finish("stop")]
    assert provider.calls == 2


async def test_looping_stream_raises_repetition_after_yielding_the_text() -> None:
    """The guard raises ProviderRepetition once the loop is long enough; nothing is lost."""
    provider = ScriptedProvider([["la "] * 1000])
    stream = resilient_stream(provider, request("sing"), breaker_for(), quick_policy())
    seen: list[StreamItem] = []
    with pytest.raises(ProviderRepetition):
        await collect(stream, into=seen)
    assert 86 <= len(seen) < 1000  # 256 chars of "la " = 86 chunks, then the next check


# --- the breaker, unit specs with a hand-driven clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("up", failures=3, cooldown=10, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.admit()
        breaker.failure()


def test_breaker_opens_after_the_configured_consecutive_failures(breaker: CircuitBreaker) -> None:
    """Two failures leave it closed; the third opens it."""
    fail(breaker, 2)
    closed_after_two = breaker.state
    fail(breaker, 1)
    assert (closed_after_two, breaker.state) == (BreakerState.CLOSED, BreakerState.OPEN)


def test_open_breaker_fails_fast_saying_when_it_retries(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    """While open, admit raises provider_unavailable with the seconds left."""
    fail(breaker, 3)
    clock.now += 4
    with pytest.raises(ProviderUnavailable, match=r"up is failing .* tried again in 6\.0 s"):
        breaker.admit()


def test_a_success_resets_the_count_of_failures(breaker: CircuitBreaker) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    fail(breaker, 2)
    breaker.success()
    fail(breaker, 2)
    assert (breaker.state, breaker.failures) == (BreakerState.CLOSED, 2)


def test_after_the_cooldown_exactly_one_probe_goes_through(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    """Half-open: the first call is the probe, the next fails fast while it runs."""
    fail(breaker, 3)
    clock.now += 10
    assert breaker.admit() is True
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(ProviderUnavailable, match="checking whether it is back"):
        breaker.admit()


def test_a_successful_probe_closes_the_breaker(breaker: CircuitBreaker, clock: Clock) -> None:
    """The probe's success closes it; calls go through again."""
    fail(breaker, 3)
    clock.now += 10
    breaker.admit()
    breaker.success()
    assert (breaker.state, breaker.failures) == (BreakerState.CLOSED, 0)
    assert breaker.admit() is False


def test_a_failed_probe_reopens_for_another_cooldown(breaker: CircuitBreaker, clock: Clock) -> None:
    """A failing probe opens it again, for a full cool-down from now."""
    fail(breaker, 3)
    clock.now += 10
    breaker.admit()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_at == clock.now + 10


def test_an_abandoned_probe_lets_the_next_call_probe(breaker: CircuitBreaker, clock: Clock) -> None:
    """A probe cancelled before its verdict frees its place."""
    fail(breaker, 3)
    clock.now += 10
    breaker.abandon(breaker.admit())
    assert breaker.admit() is True


def test_status_reports_state_failures_and_retry_at(breaker: CircuitBreaker, clock: Clock) -> None:
    """status(): closed with no retry time; open with an ISO retry_at; half-open once due."""
    assert breaker.status() == {"state": "closed", "failures": 0, "retry_at": None}
    fail(breaker, 3)
    status = breaker.status()
    assert (status["state"], status["failures"]) == ("open", 3)
    assert isinstance(status["retry_at"], str)
    assert status["retry_at"].endswith("+00:00")
    clock.now += 10
    assert breaker.status()["state"] == "half-open"


def test_zero_failures_disables_the_breaker(clock: Clock) -> None:
    """breaker_failures = 0 never opens."""
    breaker = CircuitBreaker("up", failures=0, cooldown=10, clock=clock)
    fail(breaker, 100)
    assert breaker.state is BreakerState.CLOSED


# --- the repetition guard, unit specs


def feed_all(guard: RepetitionGuard, chunks: list[str]) -> int | None:
    """The index of the chunk after which the guard fired, or None."""
    for index, chunk in enumerate(chunks):
        if guard.feed(chunk):
            return index
    return None


def test_guard_stops_a_chunk_repeated_past_the_limit() -> None:
    """One 4-char chunk: not before 64 repeats (256 chars), within CHECK_EVERY chars more."""
    fired = feed_all(RepetitionGuard(limit=50), ["ab", "cd", *["echo"] * 300])
    assert fired is not None
    assert 64 <= fired - 1 <= 64 + CHECK_EVERY // 4
    guard = RepetitionGuard(limit=50)
    feed_all(guard, ["echo"] * 100)
    assert guard.unit == "echo"


def test_guard_finds_a_loop_that_does_not_align_with_chunks() -> None:
    """A sentence repeated, cut at random places, is found (unit up to max_unit chars)."""
    text = "Let me explain. " + "I am very sorry about that! " * 80
    cuts = sorted(random.Random(5).sample(range(1, len(text)), 300))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    guard = RepetitionGuard(limit=50)
    assert feed_all(guard, chunks) is not None
    assert len(guard.unit) == len("I am very sorry about that! ")


def test_guard_ignores_a_run_shorter_than_the_limit() -> None:
    """49 repeats of a 10-char unit are not a loop at limit 50."""
    assert feed_all(RepetitionGuard(limit=50), ["0123456789"] * 49) is None


def test_guard_ignores_a_short_ruler() -> None:
    """A line of 100 dashes (a unit of 1 char under MIN_RUN_CHARS) is not a loop."""
    text = "# Title\n" + "-" * 100 + "\nSome words after the rule, and more of them.\n"
    assert feed_all(RepetitionGuard(limit=50), list(text)) is None


def test_guard_ignores_ordinary_text() -> None:
    """Long varied text never fires."""
    words = [f"word{n} " for n in range(3000)]
    assert feed_all(RepetitionGuard(limit=50), words) is None


def test_guard_ignores_units_longer_than_max_unit() -> None:
    """A repeated paragraph longer than max_unit is left alone (it may be a list or table)."""
    row = "| a row of a table that is quite a bit longer than sixty-four chars |\n"
    assert feed_all(RepetitionGuard(limit=50, max_unit=64), [row] * 200) is None


@given(
    prefix=st.text(max_size=300),
    unit=st.text(min_size=1, max_size=64),
    seed=st.integers(0, 2**16),
)
def test_guard_always_finds_a_long_enough_loop(prefix: str, unit: str, seed: int) -> None:
    """Any unit of at most max_unit chars, repeated past the limit, is found at any chunking."""
    repeats = max(50, -(-MIN_RUN_CHARS // len(unit))) + CHECK_EVERY // len(unit) + 2
    text = prefix + unit * repeats
    cuts = sorted(set(random.Random(seed).sample(range(1, len(text)), min(200, len(text) - 1))))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    guard = RepetitionGuard(limit=50, max_unit=64)
    assert feed_all(guard, chunks) is not None
