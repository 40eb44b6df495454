"""Inline reasoning: answers that put their thinking in the text as ``<think>…</think>``.

Servers without a reasoning parser (vLLM or SGLang started without ``--reasoning-parser``,
llama.cpp with ``--reasoning-format none``, many proxies) send a thinking model's output as
it comes: ``<think>`` first (possibly after whitespace), the reasoning, ``</think>``, then the
answer. :class:`ThinkSplitter` turns such content deltas into :class:`Reasoning` and text,
whatever way the tags are cut across deltas ("<thi" + "nk>").
"""

from __future__ import annotations

from liaotian.providers.base import Reasoning, StreamItem

OPEN = "<think>"
CLOSE = "</think>"

_START, _THINKING, _ANSWER_START, _TEXT = range(4)


class ThinkSplitter:
    """Splits one answer's content deltas into reasoning and text; one per stream.

    Only a ``<think>`` at the very start of the content (whitespace before it allowed)
    opens reasoning; it lasts until ``</think>``. Whitespace right after ``</think>`` is
    dropped (models put a blank line there). Text that merely mentions ``<think>`` later is
    text. Bytes that could still be the start of a tag are held back until the next delta
    or :meth:`flush`; at the end, reasoning that was never closed stays reasoning and a
    held-back partial ``<think`` is text.
    """

    __slots__ = ("_held", "_state")

    def __init__(self) -> None:
        self._state = _START
        self._held = ""

    def feed(self, content: str) -> list[StreamItem]:
        """The parts ``content`` completes, in order (text as ``str``)."""
        if self._state == _TEXT:
            return [content] if content else []
        items: list[StreamItem] = []
        buffer = self._held + content
        self._held = ""
        if self._state == _START:
            stripped = buffer.lstrip()
            if not stripped or (len(stripped) < len(OPEN) and OPEN.startswith(stripped)):
                self._held = buffer  # whitespace, or what may become "<think>"
                return items
            if not stripped.startswith(OPEN):
                self._state = _TEXT
                return [buffer]
            self._state = _THINKING
            buffer = stripped[len(OPEN) :]
        if self._state == _THINKING:
            end = buffer.find(CLOSE)
            if end < 0:
                keep = _partial_suffix(buffer, CLOSE)
                reasoning = buffer[: len(buffer) - keep]
                self._held = buffer[len(buffer) - keep :]
                if reasoning:
                    items.append(Reasoning(reasoning))
                return items
            if end:
                items.append(Reasoning(buffer[:end]))
            self._state = _ANSWER_START
            buffer = buffer[end + len(CLOSE) :]
        # _ANSWER_START
        text = buffer.lstrip()
        if text:
            self._state = _TEXT
            items.append(text)
        return items

    def flush(self) -> list[StreamItem]:
        """What is held back, once the content is over."""
        held, self._held = self._held, ""
        if not held:
            return []
        if self._state == _THINKING:
            return [Reasoning(held)]
        if self._state == _START and held.strip():
            return [held]
        return []


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that is a proper start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def split_complete(content: str) -> list[StreamItem]:
    """A whole (non-streamed) content split the same way."""
    splitter = ThinkSplitter()
    return [*splitter.feed(content), *splitter.flush()]
