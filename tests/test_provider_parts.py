"""Typed reply parts from every provider: reasoning, sources, images, usage, capabilities.

The HTTP providers run for real against tests/fake_upstream.py; the fake provider and the
resilience wrapper are called directly.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from liaotian.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderRepetition,
    ProviderUnavailable,
)
from liaotian.providers.base import (
    Capabilities,
    ChatMessage,
    ChatRequest,
    Finish,
    ImagePart,
    ModelInfo,
    Provider,
    Reasoning,
    Sources,
    StreamItem,
)
from liaotian.providers.dashscope import dashscope_providers, default_capabilities, default_endpoint
from liaotian.providers.fake import FakeProvider
from liaotian.providers.local import LocalProvider
from liaotian.providers.openai_compat import openai_providers
from liaotian.providers.registry import ProviderContext, ProviderRegistry
from liaotian.providers.resilience import CircuitBreaker, ResiliencePolicy, resilient_stream
from liaotian.providers.think import ThinkSplitter, split_complete
from liaotian.settings import Settings
from tests.conftest import SettingsFactory
from tests.fake_upstream import (
    DASHSCOPE_MULTIMODAL_PATH,
    DASHSCOPE_PATH,
    FakeUpstream,
    expected_reasoning,
    expected_reply,
    reasoning_chunks,
    reply_chunks,
    search_results,
)

PNG = ImagePart("image/png", b"\x89PNG\r\n\x1a\n-not-really")
JPEG = ImagePart("image/jpeg", b"\xff\xd8\xff-not-really")

ProviderFactory = Callable[..., Awaitable[Provider]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_provider(make_settings: SettingsFactory, http: aiohttp.ClientSession) -> ProviderFactory:
    """``await make_provider(kind, **settings_overrides)``: a started provider on the fake."""

    async def make(kind: str, **overrides: Any) -> Provider:
        factory = dashscope_providers if kind == "dashscope" else openai_providers
        [provider] = factory(ProviderContext(make_settings(**overrides), http))
        await provider.start()
        return provider

    return make


def ask(
    prompt: str,
    model: str = "qwen-plus",
    *,
    images: tuple[ImagePart, ...] = (),
    history: list[ChatMessage] | None = None,
    **options: Any,
) -> ChatRequest:
    messages = [*(history or []), ChatMessage("user", prompt, images=images)]
    return ChatRequest(model=model, messages=messages, **options)


async def parts(stream: AsyncIterator[StreamItem]) -> tuple[list[StreamItem], Finish]:
    """The items before the Finish, and the Finish (exactly one, last)."""
    items = [item async for item in stream]
    assert isinstance(items[-1], Finish)
    assert not any(isinstance(item, Finish) for item in items[:-1])
    return items[:-1], items[-1]


def reasoning_of(items: list[StreamItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, Reasoning))


def text_of(items: list[StreamItem]) -> str:
    return "".join(item for item in items if isinstance(item, str))


def kinds(items: list[StreamItem]) -> list[str]:
    """The run of item kinds, repeats collapsed: e.g. ``["sources", "reasoning", "text"]``."""
    names = {str: "text", Reasoning: "reasoning", Sources: "sources"}
    return [name for name, _ in itertools.groupby(names[type(item)] for item in items)]


# --- DashScope: thinking


async def test_dashscope_streams_reasoning_deltas_before_the_text(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """With thinking on, each reasoning_content delta is a Reasoning, all before the text."""
    provider = await make_provider("dashscope")
    prompt = "[think=3] why?"
    items, _ = await parts(provider.stream(ask(prompt, thinking=True)))
    assert items[:3] == [Reasoning(text) for text in reasoning_chunks(prompt)]
    assert items[3:] == reply_chunks(prompt)
    assert fake.requests[-1].body["parameters"]["enable_thinking"] is True


async def test_dashscope_sends_no_thinking_switch_when_the_request_leaves_it_open(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """thinking None leaves enable_thinking out, so the model's own default applies."""
    provider = await make_provider("dashscope")
    items, _ = await parts(provider.stream(ask("[think=3] hi")))
    assert "enable_thinking" not in fake.requests[-1].body["parameters"]
    assert kinds(items) == ["text"]


async def test_dashscope_sends_thinking_off(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """thinking False is sent as enable_thinking false, and no reasoning comes."""
    provider = await make_provider("dashscope")
    items, _ = await parts(provider.stream(ask("[think=3] hi", thinking=False)))
    assert fake.requests[-1].body["parameters"]["enable_thinking"] is False
    assert kinds(items) == ["text"]


async def test_dashscope_never_switches_off_a_model_that_always_thinks(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """An always-thinking model (qwq) gets no enable_thinking even when asked not to think."""
    provider = await make_provider("dashscope", dashscope_models=["qwq-plus"])
    prompt = "[think=2] hi"
    items, _ = await parts(provider.stream(ask(prompt, "qwq-plus", thinking=False)))
    assert "enable_thinking" not in fake.requests[-1].body["parameters"]
    assert reasoning_of(items) == expected_reasoning(prompt)


async def test_dashscope_sends_the_thinking_budget(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """thinking_budget goes to parameters.thinking_budget with thinking on."""
    provider = await make_provider("dashscope")
    await parts(provider.stream(ask("hi", thinking=True, thinking_budget=64)))
    assert fake.requests[-1].body["parameters"]["thinking_budget"] == 64


async def test_dashscope_non_stream_with_thinking_is_streamed_and_collected(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """stream=False with thinking goes out as incremental SSE and comes back whole."""
    provider = await make_provider("dashscope")
    prompt = "[think=4] whole"
    items, finish = await parts(provider.stream(ask(prompt, stream=False, thinking=True)))
    assert items == [Reasoning(expected_reasoning(prompt)), expected_reply(prompt)]
    sent = fake.requests[-1]
    assert sent.headers["X-DashScope-SSE"] == "enable"
    assert sent.body["parameters"]["incremental_output"] is True
    assert finish.usage.reasoning_tokens == 4


async def test_dashscope_usage_has_reasoning_and_cached_tokens(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """output_tokens_details.reasoning_tokens and prompt_tokens_details.cached_tokens count."""
    provider = await make_provider("dashscope")
    prompt = "[think=2] [cached=7] hi"
    _, finish = await parts(provider.stream(ask(prompt, thinking=True)))
    assert finish.usage.reasoning_tokens == 2
    assert finish.usage.cached_tokens == 7
    assert finish.usage.output_tokens == 2 + len(reply_chunks(prompt))


async def test_dashscope_sends_reasoning_of_history_back(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """An assistant message's reasoning goes back as its reasoning_content."""
    provider = await make_provider("dashscope")
    history = [ChatMessage("user", "q"), ChatMessage("assistant", "a", reasoning="mulling")]
    await parts(provider.stream(ask("next", history=history)))
    assistant = fake.requests[-1].body["input"]["messages"][1]
    assert assistant == {"role": "assistant", "content": "a", "reasoning_content": "mulling"}


# --- DashScope: search


async def test_dashscope_search_yields_the_sources_once_before_the_text(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """search_info.search_results become one Sources item, first, with every field."""
    provider = await make_provider("dashscope")
    items, _ = await parts(provider.stream(ask("[search=3] news", search=True)))
    assert kinds(items) == ["sources", "text"]
    sources = items[0]
    assert isinstance(sources, Sources)
    wire = [source.to_wire() for source in sources.items]
    assert wire == [
        {
            "index": result["index"],
            "url": result["url"],
            "title": result["title"],
            "site": result["site_name"],
            "icon": result["icon"],
        }
        for result in search_results(3)
    ]


async def test_dashscope_search_request_asks_for_sources_and_citations(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """search=True sends enable_search with search_options for sources and [n] citations."""
    provider = await make_provider("dashscope")
    await parts(provider.stream(ask("news", search=True)))
    parameters = fake.requests[-1].body["parameters"]
    assert parameters["enable_search"] is True
    assert parameters["search_options"] == {
        "enable_source": True,
        "enable_citation": True,
        "citation_format": "[<number>]",
        "forced_search": False,
        "search_strategy": "turbo",
    }


async def test_dashscope_without_search_sends_no_search_and_yields_no_sources(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """search=False leaves enable_search out; the upstream then sends no search_info."""
    provider = await make_provider("dashscope")
    items, _ = await parts(provider.stream(ask("[search=3] news")))
    assert "enable_search" not in fake.requests[-1].body["parameters"]
    assert kinds(items) == ["text"]


async def test_dashscope_non_stream_search_yields_sources_then_text(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A plain JSON answer's search_info becomes Sources before the whole text."""
    provider = await make_provider("dashscope")
    items, _ = await parts(provider.stream(ask("[search=2] news", stream=False, search=True)))
    assert kinds(items) == ["sources", "text"]
    assert "X-DashScope-SSE" not in fake.requests[-1].headers


# --- DashScope: the multimodal endpoint


async def test_dashscope_vision_model_gets_image_parts_on_the_multimodal_endpoint(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A -vl model is called on multimodal-generation, images as data URLs before the text."""
    provider = await make_provider("dashscope", dashscope_models=["qwen-vl-plus"])
    items, _ = await parts(provider.stream(ask("what is it", "qwen-vl-plus", images=(PNG,))))
    sent = fake.requests[-1]
    assert sent.path == DASHSCOPE_MULTIMODAL_PATH
    assert sent.body["input"]["messages"][-1]["content"] == [
        {"image": PNG.data_url()},
        {"text": "what is it"},
    ]
    assert "result_format" not in sent.body["parameters"]
    assert text_of(items) == expected_reply("what is it", images=1)


async def test_dashscope_qwen35_goes_to_the_multimodal_endpoint_and_thinks_by_default(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """qwen3.5-plus is called on multimodal-generation; its list content comes back as text."""
    provider = await make_provider("dashscope", dashscope_models=["qwen3.5-plus"])
    prompt = "[think=2] hi"
    items, _ = await parts(provider.stream(ask(prompt, "qwen3.5-plus")))
    assert fake.requests[-1].path == DASHSCOPE_MULTIMODAL_PATH
    assert fake.requests[-1].body["input"]["messages"][-1]["content"] == [{"text": prompt}]
    assert reasoning_of(items) == expected_reasoning(prompt)
    assert text_of(items) == expected_reply(prompt)


async def test_dashscope_endpoint_follows_the_models_setting(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """models.<id>.endpoint = text sends even a qwen3.5 model to text-generation."""
    provider = await make_provider(
        "dashscope",
        dashscope_models=["qwen3.5-plus"],
        models={"qwen3.5-plus": {"endpoint": "text"}},
    )
    with pytest.raises(ProviderBadRequest, match="url error"):
        await parts(provider.stream(ask("hi", "qwen3.5-plus", thinking=False)))
    assert fake.requests[-1].path == DASHSCOPE_PATH


async def test_dashscope_refuses_images_for_a_text_endpoint_model(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Images for a model on the text endpoint fail with ProviderBadRequest, nothing sent."""
    provider = await make_provider("dashscope")
    with pytest.raises(ProviderBadRequest, match="endpoint"):
        await parts(provider.stream(ask("look", images=(PNG,))))
    assert not fake.requests


@pytest.mark.parametrize(
    ("model", "expected", "endpoint"),
    [
        ("qwen-plus", Capabilities(thinking=True, search=True), "text"),
        ("qwen-flash", Capabilities(thinking=True, search=True), "text"),
        ("qwen-turbo", Capabilities(thinking=True, search=True), "text"),
        ("qwen-max", Capabilities(search=True), "text"),
        ("qwen3-max", Capabilities(search=True), "text"),
        ("deepseek-v3.1", Capabilities(thinking=True), "text"),
        ("deepseek-v3.2", Capabilities(thinking=True), "text"),
        ("qwen3-32b", Capabilities(thinking=True, thinking_default=True), "text"),
        (
            "qwq-plus",
            Capabilities(thinking=True, thinking_default=True, thinking_fixed=True),
            "text",
        ),
        (
            "deepseek-r1",
            Capabilities(thinking=True, thinking_default=True, thinking_fixed=True),
            "text",
        ),
        (
            "qwen3-235b-a22b-thinking-2507",
            Capabilities(thinking=True, thinking_default=True, thinking_fixed=True),
            "text",
        ),
        ("qwen3-235b-a22b-instruct-2507", Capabilities(), "text"),
        ("qwen-vl-max", Capabilities(vision=True), "multimodal"),
        ("qwen3-vl-plus", Capabilities(vision=True, thinking=True), "multimodal"),
        (
            "qvq-max",
            Capabilities(vision=True, thinking=True, thinking_default=True, thinking_fixed=True),
            "multimodal",
        ),
        ("qwen-omni-turbo", Capabilities(vision=True), "multimodal"),
        ("qwen3-omni-flash", Capabilities(vision=True), "multimodal"),
        (
            "qwen3.5-plus",
            Capabilities(vision=True, thinking=True, thinking_default=True, search=True),
            "multimodal",
        ),
        (
            "qwen3.6-flash",
            Capabilities(vision=True, thinking=True, thinking_default=True, search=True),
            "multimodal",
        ),
    ],
)
def test_dashscope_default_capabilities_and_endpoint_by_name(
    model: str, expected: Capabilities, endpoint: str
) -> None:
    """Each model family gets the documented defaults (docs/configuration.md's table)."""
    assert default_capabilities(model) == expected
    assert default_endpoint(model) == endpoint


async def test_registry_applies_the_models_setting_over_provider_defaults(
    make_settings: SettingsFactory, http: aiohttp.ClientSession
) -> None:
    """A models override changes the named capability and keeps the provider's others."""
    settings = make_settings(models={"qwen-plus": {"vision": True, "thinking_default": True}})
    registry = ProviderRegistry(dashscope_providers(ProviderContext(settings, http)), settings)
    [plus] = [model for model in registry.models() if model.id == "qwen-plus"]
    assert plus.capabilities == Capabilities(
        vision=True, thinking=True, thinking_default=True, search=True
    )
    assert registry.resolve("qwen-plus")[1].capabilities == plus.capabilities


# --- OpenAI-compatible


async def test_openai_streams_reasoning_content_before_the_text(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """delta.reasoning_content becomes Reasoning deltas, in order, before the text."""
    provider = await make_provider("openai")
    prompt = "[think=3] why?"
    items, _ = await parts(provider.stream(ask(prompt, "fake-chat", thinking=True)))
    assert items[:3] == [Reasoning(text) for text in reasoning_chunks(prompt)]
    assert items[3:] == reply_chunks(prompt)


async def test_openai_reads_the_reasoning_field(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """delta.reasoning (vLLM, OpenRouter, Ollama) is reasoning too."""
    provider = await make_provider("openai")
    prompt = "[think=2] [reasoning_field=reasoning] hi"
    items, _ = await parts(provider.stream(ask(prompt, "fake-chat", thinking=True)))
    assert kinds(items) == ["reasoning", "text"]
    assert reasoning_of(items) == expected_reasoning(prompt)


async def test_openai_splits_inline_think_cut_across_chunks(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """<think>…</think> in content, tags cut across chunks, becomes reasoning then text."""
    provider = await make_provider("openai")
    prompt = "[think=5] [inline_think=1] hi"
    items, _ = await parts(provider.stream(ask(prompt, "fake-chat", thinking=True)))
    assert kinds(items) == ["reasoning", "text"]
    assert reasoning_of(items) == expected_reasoning(prompt)
    assert text_of(items) == expected_reply(prompt)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_openai_non_stream_yields_the_reasoning_field_then_text(
    field: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A whole answer's message reasoning field comes as one Reasoning before the text."""
    provider = await make_provider("openai")
    prompt = f"[think=3] [reasoning_field={field}] whole"
    request = ask(prompt, "fake-chat", stream=False, thinking=True)
    items, _ = await parts(provider.stream(request))
    assert items == [Reasoning(expected_reasoning(prompt)), expected_reply(prompt)]


async def test_openai_non_stream_splits_inline_think(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A whole answer with inline <think> is split into Reasoning and text."""
    provider = await make_provider("openai")
    prompt = "[think=3] [inline_think=1] whole"
    request = ask(prompt, "fake-chat", stream=False, thinking=True)
    items, _ = await parts(provider.stream(request))
    assert items == [Reasoning(expected_reasoning(prompt)), expected_reply(prompt)]


async def test_openai_usage_has_reasoning_and_cached_tokens(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """completion_tokens_details.reasoning_tokens and prompt_tokens_details.cached_tokens count."""
    provider = await make_provider("openai")
    prompt = "[think=2] [cached=9] hi"
    _, finish = await parts(provider.stream(ask(prompt, "fake-chat", thinking=True)))
    assert finish.usage.reasoning_tokens == 2
    assert finish.usage.cached_tokens == 9


async def test_openai_sends_the_thinking_switch_only_when_set(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """thinking True/False goes as chat_template_kwargs and enable_thinking; None sends none."""
    provider = await make_provider("openai")
    await parts(provider.stream(ask("hi", "fake-chat")))
    assert "chat_template_kwargs" not in fake.requests[-1].body
    assert "enable_thinking" not in fake.requests[-1].body
    await parts(provider.stream(ask("hi", "fake-chat", thinking=False)))
    assert fake.requests[-1].body["chat_template_kwargs"] == {"enable_thinking": False}
    assert fake.requests[-1].body["enable_thinking"] is False


async def test_openai_sends_images_as_image_url_parts(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Images go as image_url data URLs before a text part; the model sees both."""
    provider = await make_provider("openai")
    items, _ = await parts(provider.stream(ask("compare", "fake-chat", images=(PNG, JPEG))))
    assert fake.requests[-1].body["messages"][-1]["content"] == [
        {"type": "image_url", "image_url": {"url": PNG.data_url()}},
        {"type": "image_url", "image_url": {"url": JPEG.data_url()}},
        {"type": "text", "text": "compare"},
    ]
    assert text_of(items) == expected_reply("compare", images=2)


async def test_openai_text_only_content_stays_a_string(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Without images a message's content is a plain string (list content stops some
    servers' thinking), and history reasoning goes back as reasoning_content."""
    provider = await make_provider("openai")
    history = [ChatMessage("assistant", "a", reasoning="mulling")]
    await parts(provider.stream(ask("plain", "fake-chat", history=history)))
    assert fake.requests[-1].body["messages"] == [
        {"role": "assistant", "content": "a", "reasoning_content": "mulling"},
        {"role": "user", "content": "plain"},
    ]


async def test_openai_discovered_models_claim_no_capabilities(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A model found with GET /models is text only until the models setting says more."""
    provider = await make_provider("openai")
    assert {model.capabilities for model in provider.models()} == {Capabilities()}


# --- <think> split anywhere


THINKING = "<think>\nstep one, step two</think>\n\nThe answer."


def split_all(content: str, cuts: tuple[int, ...]) -> list[StreamItem]:
    splitter = ThinkSplitter()
    items: list[StreamItem] = []
    bounds = [0, *cuts, len(content)]
    for start, end in itertools.pairwise(bounds):
        items.extend(splitter.feed(content[start:end]))
    return [*items, *splitter.flush()]


@pytest.mark.parametrize(
    ("content", "reasoning", "text"),
    [
        (THINKING, "\nstep one, step two", "The answer."),
        ("  \n" + THINKING, "\nstep one, step two", "The answer."),
        ("<think>cut short, never closed", "cut short, never closed", ""),
        ("Plain text with <think> inside.", "", "Plain text with <think> inside."),
        ("<thin", "", "<thin"),
        ("<think></think>Only text", "", "Only text"),
    ],
)
def test_think_tags_split_at_every_pair_of_points_give_the_same_parts(
    content: str, reasoning: str, text: str
) -> None:
    """However the content is cut (any one or two cut points), reasoning and text agree."""
    points = range(1, len(content))
    for cuts in itertools.chain([()], ((p,) for p in points), itertools.combinations(points, 2)):
        items = split_all(content, cuts)
        assert reasoning_of(items) == reasoning, cuts
        assert text_of(items) == text, cuts
        assert kinds(items) == [k for k, v in (("reasoning", reasoning), ("text", text)) if v]
    assert split_complete(content) == split_all(content, ())


def test_think_splitter_passes_answer_text_through_once_it_is_text() -> None:
    """After the first non-<think> text every delta is passed on as it came."""
    splitter = ThinkSplitter()
    assert splitter.feed("Hello") == ["Hello"]
    assert splitter.feed(" <think>") == [" <think>"]
    assert splitter.flush() == []


# --- the fake provider


async def test_fake_provider_thinks_when_thinking_is_on() -> None:
    """think=N streams N reasoning tokens before the answer when the request thinks."""
    provider = FakeProvider()
    request = ChatRequest("fake-echo", [ChatMessage("user", "/fake think=3\nhi")], thinking=True)
    items, finish = await parts(provider.stream(request))
    assert items[:3] == [Reasoning("r0 "), Reasoning("r1 "), Reasoning("r2 ")]
    assert text_of(items) == "hi"
    assert finish.usage.reasoning_tokens == 3


async def test_fake_provider_does_not_think_by_default() -> None:
    """Without thinking on, think=N adds no reasoning (fake-echo's default is off)."""
    provider = FakeProvider()
    request = ChatRequest("fake-echo", [ChatMessage("user", "/fake think=3\nhi")])
    items, _ = await parts(provider.stream(request))
    assert kinds(items) == ["text"]


async def test_fake_provider_cites_sources_when_searching() -> None:
    """sources=K with search on gives a Sources of K before the text and [n] citations."""
    provider = FakeProvider()
    message = ChatMessage("user", "/fake sources=2\nfind")
    items, _ = await parts(provider.stream(ChatRequest("fake-echo", [message], search=True)))
    assert kinds(items) == ["sources", "text"]
    sources = items[0]
    assert isinstance(sources, Sources)
    assert [source.url for source in sources.items] == [
        "https://example.com/1",
        "https://example.com/2",
    ]
    assert text_of(items) == "find [1] [2]"
    plain, _ = await parts(provider.stream(ChatRequest("fake-echo", [message])))
    assert text_of(plain) == "find"


async def test_fake_provider_echo_counts_the_images() -> None:
    """An echo of a message with images starts with how many there were."""
    provider = FakeProvider()
    message = ChatMessage("user", "look", images=(PNG, JPEG))
    items, _ = await parts(provider.stream(ChatRequest("fake-echo", [message])))
    assert text_of(items) == "(2 images) look"


def test_fake_provider_model_claims_every_capability() -> None:
    """fake-echo takes images, can think (off by default) and search."""
    [model] = FakeProvider().models()
    assert model.capabilities == Capabilities(vision=True, thinking=True, search=True)


def test_local_model_claims_no_capability() -> None:
    """The embedded model is text only."""
    local = LocalProvider.from_settings(Settings(local_enabled=True, local_model_path=None))
    assert {model.capabilities for model in local.models()} == {Capabilities()}


# --- resilience with reasoning


class PartsProvider(Provider):
    """Plays a list of items, then raises ``error`` (if any) or finishes; counts calls."""

    kind = "parts"

    def __init__(self, items: list[StreamItem], error: ProviderError | None = None) -> None:
        super().__init__("parts")
        self.items = items
        self.error = error
        self.calls = 0

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("parts", self.name, "parts")]

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        self.calls += 1
        for item in self.items:
            yield item
        if self.error is not None:
            raise self.error
        yield Finish("stop")


def run(provider: Provider, **policy: Any) -> AsyncIterator[StreamItem]:
    async def no_sleep(seconds: float) -> None:
        pass

    breaker = CircuitBreaker(provider.name, failures=5, cooldown=30)
    request = ChatRequest("parts", [ChatMessage("user", "hi")])
    return resilient_stream(provider, request, breaker, ResiliencePolicy(sleep=no_sleep, **policy))


async def drain(stream: AsyncIterator[StreamItem], into: list[StreamItem]) -> None:
    """Append every item of ``stream`` to ``into`` (kept when it raises)."""
    async for item in stream:
        into.append(item)


async def test_a_loop_in_the_reasoning_is_stopped() -> None:
    """Reasoning that repeats one unit over and over ends the reply with ProviderRepetition."""
    provider = PartsProvider([Reasoning("hmm, ") for _ in range(400)])
    seen: list[StreamItem] = []
    with pytest.raises(ProviderRepetition, match="reasoning"):
        await drain(run(provider), seen)
    assert 0 < len(seen) < 400


async def test_reasoning_does_not_break_up_a_loop_in_the_text() -> None:
    """Reasoning between looping text deltas does not hide the loop from the text guard."""
    items: list[StreamItem] = []
    for index in range(400):
        items += ["again ", Reasoning(f"thought {index} ")]
    with pytest.raises(ProviderRepetition, match="answer"):
        await drain(run(PartsProvider(items)), [])


async def test_no_retry_once_reasoning_was_yielded() -> None:
    """A failure after the first Reasoning is raised as is, not retried."""
    provider = PartsProvider([Reasoning("let me see")], ProviderUnavailable("cut"))
    seen: list[StreamItem] = []
    with pytest.raises(ProviderUnavailable, match="cut"):
        await drain(run(provider, retries=3), seen)
    assert seen == [Reasoning("let me see")]
    assert provider.calls == 1


async def test_dashscope_non_stream_collects_sources_reasoning_and_text_in_order(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A collected answer gives its Sources, then its whole reasoning, then its whole text."""
    provider = await make_provider("dashscope")
    prompt = "[think=2] [search=2] both"
    request = ask(prompt, stream=False, thinking=True, search=True)
    items, _ = await parts(provider.stream(request))
    assert kinds(items) == ["sources", "reasoning", "text"]
    assert items[1:] == [Reasoning(expected_reasoning(prompt)), expected_reply(prompt)]
