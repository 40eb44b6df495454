"""Conversation titles: the first one from the first message, a better one in the background.

A new conversation is titled from its first message when it is created
(:func:`first_message_title`, ``title_source`` ``message``). After its first answer
:class:`Titler` asks the ``title_model`` for a short title and writes it with
``title_source`` ``generated``; every connection of the owner, in every process, gets it as
a conversation change.

Guarantees:

* the reply is never delayed or failed by its title: the title is asked for after the
  reply's outcome is saved, in a task of its own, and any failure (model unknown or
  unavailable, provider error, timeout, an empty answer, the database) just leaves the
  title as it was;
* a rename wins: the write is conditional on the title still being the one made from the
  first message, so a rename landing while the title is being generated is kept;
* at most :data:`CONCURRENCY` title requests run at once per process and at most
  :data:`BACKLOG` wait; beyond that a conversation keeps its first-message title;
* :meth:`Titler.close` cancels what is pending and returns at once (shutdown never waits
  for a title);
* a title request is not a reply: it is not stored as a message, not counted against the
  owner's message rate limit or streaming replies, and not shown to anyone but as the title.

``title_model``: ``auto`` asks the model that answered, unless it is the embedded one
(provider kind ``local``: the title is then the first line of the first message);
``off`` keeps the first message cut short; ``first-line`` takes its first line; any other
value names the model that writes every title.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass

from liaotian.backplane import Backplane, ConversationChange
from liaotian.errors import LiaotianError
from liaotian.metrics import Metrics
from liaotian.providers import ChatMessage, ChatRequest, ProviderRegistry, Reasoning
from liaotian.settings import Settings
from liaotian.store import Store

log = logging.getLogger(__name__)

TITLE_CHARS = 60
"""The longest title made from a first message."""
CONCURRENCY = 4
"""Title requests running at once, per process."""
BACKLOG = 256
"""Title requests waiting for a slot, per process; more are dropped."""
TIMEOUT = 30.0
"""Seconds a title may take, retries included."""
MAX_TOKENS = 48
"""Enough for a short title in any language (a model that always thinks gets more)."""
THINKING_MAX_TOKENS = 2048
EXCERPT_CHARS = 1500
"""How much of the first message and of its answer the title model reads."""
EMBEDDED_KIND = "local"

INSTRUCTIONS = (
    "You write titles for chat conversations. Reply with a short title (at most 8 words) "
    "for the conversation the user shows you, in the language the conversation is written "
    "in. Reply with the title only: no quotes, no markdown, no final punctuation, no "
    "explanation."
)

_PREFIX = re.compile(r"^(?:title|标题|題目|タイトル)\s*[:：]\s*", re.IGNORECASE)
_MARKUP = re.compile(r"^[#>*_`~\s-]+|[*_`~\s]+$")
_QUOTES = "\"'“”‘’「」『』《》«»`"
_TRAILING = ".。!！?？,，;；:：、 "


def first_message_title(message: str) -> str:
    """A title from a first message: the whole message on one line, at most TITLE_CHARS
    (``title_model`` ``off``, and before a title is generated)."""
    return _cut(" ".join(message.split()), TITLE_CHARS)


def first_line_title(message: str) -> str:
    """A title from the first non-blank line of a message, at most TITLE_CHARS."""
    for line in message.splitlines():
        if line.strip():
            return first_message_title(line)
    return ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def clean_title(answer: str, max_chars: int) -> str:
    """A model's answer made a title: its first non-blank line without a "Title:" prefix,
    markdown, quotes or final punctuation, whitespace collapsed, at most ``max_chars``.
    Empty when nothing is left."""
    answer = re.sub(r"<think>.*?</think>", "", answer, flags=re.DOTALL)
    line = next((line for line in answer.splitlines() if line.strip()), "")
    previous = None
    while line != previous:
        previous = line
        line = _MARKUP.sub("", line.strip())
        line = _PREFIX.sub("", line)
        line = line.strip(_QUOTES).rstrip(_TRAILING)
    return _cut(" ".join(line.split()), max_chars)


@dataclass(frozen=True, slots=True)
class TitleJob:
    """A conversation whose first answer just completed, to title."""

    owner: str
    conversation_id: str
    model: str
    """The model that answered (``title_model`` ``auto`` asks it)."""
    message: str
    answer: str = ""


class Titler:
    """Titles conversations in the background after their first answer (one per process)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry,
        backplane: Backplane,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._store = store
        self._providers = providers
        self._backplane = backplane
        self._metrics = metrics
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def initial_title(self, message: str, *, model_kind: str) -> str:
        """The title a conversation gets when its first message creates it, answered by a
        model of provider kind ``model_kind``."""
        setting = self._settings.title_model
        if setting == "first-line" or (setting == "auto" and model_kind == EMBEDDED_KIND):
            return first_line_title(message)
        return first_message_title(message)

    def title_model(self, answered_by: str) -> str | None:
        """The model to ask for a title of a conversation answered by ``answered_by``, or
        None when titles are not generated by a model."""
        setting = self._settings.title_model
        if setting in ("off", "first-line"):
            return None
        if setting != "auto":
            return setting
        try:
            provider, _ = self._providers.resolve(answered_by)
        except LiaotianError:
            return None
        return None if provider.kind == EMBEDDED_KIND else answered_by

    def after_first_answer(self, job: TitleJob) -> None:
        """Title ``job``'s conversation in the background (returns at once, never raises)."""
        if self._closed or not (job.message.strip() or job.answer.strip()):
            return
        model = self.title_model(job.model)
        if model is None:
            return
        if len(self._tasks) >= CONCURRENCY + BACKLOG:
            self._metrics.titles.labels("dropped").inc()
            return
        task = asyncio.create_task(self._title(job, model), name="liaotian-title")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Generate no more titles; cancel the pending ones and wait for them to stop."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def pending(self) -> int:
        """Titles being generated or waiting for a slot."""
        return len(self._tasks)

    async def _title(self, job: TitleJob, model: str) -> None:
        outcome = "failed"
        try:
            async with self._slots:
                async with asyncio.timeout(TIMEOUT):
                    answer = await self._ask(model, job)
                title = clean_title(answer, self._settings.max_title_chars)
                if not title:
                    log.info("the title model %s gave no title", model)
                    return
                conversation = await self._store.set_generated_title(
                    job.owner, job.conversation_id, title
                )
                if conversation is None:
                    outcome = "kept"
                    return
                outcome = "written"
                change = ConversationChange(conversation.id, conversation.to_wire())
                self._backplane.publish_change(job.owner, change)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except TimeoutError:
            log.info("the title model %s took longer than %g s; title kept", model, TIMEOUT)
        except LiaotianError as error:
            log.info("no title from %s (%s); title kept", model, error.message)
        except Exception:
            log.exception("titling a conversation failed")
        finally:
            self._metrics.titles.labels(outcome).inc()

    async def _ask(self, model_id: str, job: TitleJob) -> str:
        """The title model's answer (text only; its thinking is dropped)."""
        provider, model = self._providers.resolve(model_id)
        capabilities = model.capabilities
        thinking: bool | None = None
        if capabilities.thinking and not capabilities.thinking_fixed:
            thinking = False
        thinks = capabilities.thinking and capabilities.thinking_default and thinking is None
        conversation = (
            f"User: {_cut(job.message.strip(), EXCERPT_CHARS)}\n\n"
            f"Assistant: {_cut(job.answer.strip(), EXCERPT_CHARS)}"
        )
        request = ChatRequest(
            model=model.upstream,
            messages=[
                ChatMessage("system", INSTRUCTIONS),
                ChatMessage("user", conversation),
            ],
            stream=True,
            temperature=0,
            max_tokens=THINKING_MAX_TOKENS if thinks else MAX_TOKENS,
            thinking=thinking,
        )
        parts: list[str] = []
        stream = self._providers.stream(provider, request)
        try:
            async for item in stream:
                if type(item) is str:
                    parts.append(item)
                elif isinstance(item, Reasoning):
                    continue
        finally:
            closing = getattr(stream, "aclose", None)
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing()
        return "".join(parts)
