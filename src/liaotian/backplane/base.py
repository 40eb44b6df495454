"""The backplane's interface, and the owner bus every backend keeps in its process.

The backplane is where a process shares what its replies and its owners' conversations do:
it owns the reply logs (:class:`~liaotian.replies.log.ReplyHub`), the owner bus, change
notices, cancels and mirrors of other processes' replies. The engine publishes and cancels
only through it; connections talk only to the engine. A backend is chosen by URL
(:func:`liaotian.backplane.open_backplane`): ``memory://`` for one process, ``redis://…``
for several.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from liaotian.replies.log import ReplyKey, ReplyLog


@dataclass(frozen=True, slots=True)
class ConversationChange:
    """A conversation was renamed (``conversation`` is its new wire form) or deleted."""

    conversation_id: str
    conversation: dict[str, Any] | None
    origin: object = None
    """Whoever caused it (a connection), so it is not told twice."""

    @property
    def deleted(self) -> bool:
        return self.conversation is None


Notice = ReplyLog | ConversationChange


class OwnerBus:
    """Fans out notices (new replies, conversation changes) to an owner's connections.

    Delivery is a synchronous call of each listener's :meth:`Listener.notify` inside
    :meth:`publish`: no queue and no task per listener, so an idle connection costs one
    entry here.
    """

    class Listener:
        """What subscribes to an owner's notices (a connection)."""

        __slots__ = ()

        def notify(self, notice: Notice) -> None:
            """Called inside :meth:`OwnerBus.publish`: must return at once (start a task
            for anything that waits) and must not raise."""
            raise NotImplementedError

    def __init__(self) -> None:
        self._listeners: dict[str, tuple[OwnerBus.Listener, ...]] = {}

    def subscribe(self, owner: str, listener: OwnerBus.Listener) -> None:
        """Deliver ``owner``'s notices to ``listener`` until :meth:`unsubscribe`."""
        self._listeners[owner] = (*self._listeners.get(owner, ()), listener)

    def unsubscribe(self, owner: str, listener: OwnerBus.Listener) -> None:
        """Stop delivering to ``listener``; a listener not subscribed is ignored."""
        remaining = tuple(
            other for other in self._listeners.get(owner, ()) if other is not listener
        )
        if remaining:
            self._listeners[owner] = remaining
        else:
            self._listeners.pop(owner, None)

    def has_listeners(self, owner: str) -> bool:
        return owner in self._listeners

    def publish(self, owner: str, notice: Notice) -> None:
        """Call every listener of ``owner`` with ``notice``, in subscription order."""
        # A tuple: listeners that (un)subscribe meanwhile do not disturb the loop.
        for listener in self._listeners.get(owner, ()):
            listener.notify(notice)


CancelHandler = Callable[[str, list[str]], object]
"""``handler(owner, message_ids)``: stop those of the owner's replies that run here."""


class Backplane(ABC):
    """What a process shares with the others (nothing, for :mod:`memory`).

    Every method returns promptly: none waits on another process or on Redis without a
    bound (what must reach Redis is sent in the background and retried).
    """

    scheme: ClassVar[str]
    """The URL scheme(s) that choose this backend, for messages."""

    # -- lifecycle -------------------------------------------------------------------------

    @abstractmethod
    async def start(self, cancel_local: CancelHandler) -> None:
        """Start; from now on a cancel for a reply of this process calls ``cancel_local``.

        Recovers what an earlier stop left behind: replies still marked streaming whose
        process is gone end ``interrupted`` (at start alone; by lease with others).
        """

    @abstractmethod
    async def close(self) -> None:
        """Stop background work; first hand over what is pending, within a bound."""

    @abstractmethod
    def status(self) -> dict[str, object]:
        """A JSON-ready report for ``/readyz``."""

    # -- reply logs ------------------------------------------------------------------------

    @abstractmethod
    def create_log(self, key: ReplyKey) -> ReplyLog:
        """A new, empty log for a reply this process generates."""

    @abstractmethod
    def live_log(self, owner: str, message_id: str) -> ReplyLog | None:
        """The log this process holds for the owner's reply (its own or a mirror), or None."""

    @abstractmethod
    def publish_reply(self, reply_log: ReplyLog) -> None:
        """Announce a reply of this process to its owner's connections, here and elsewhere,
        and share its events with the other processes as they come."""

    @abstractmethod
    async def replica(self, key: ReplyKey, *, streaming: bool) -> ReplyLog | None:
        """A local log following a reply another process generates, or None if no other
        process shares it. ``streaming``: the database says it is still live."""

    # -- owners and conversations ------------------------------------------------------------

    @abstractmethod
    def subscribe(self, owner: str, listener: OwnerBus.Listener) -> None:
        """Deliver the owner's notices (new replies, conversation changes) to ``listener``."""

    @abstractmethod
    def unsubscribe(self, owner: str, listener: OwnerBus.Listener) -> None:
        """Stop delivering to ``listener``."""

    @abstractmethod
    def publish_change(self, owner: str, change: ConversationChange) -> None:
        """Tell the owner's connections, here and elsewhere, that a conversation changed."""

    # -- across processes ------------------------------------------------------------------

    @abstractmethod
    async def shared_streaming(
        self, owner: str, *, message_id: str | None = None, conversation_id: str | None = None
    ) -> list[str]:
        """The ids of the owner's replies streaming in *any* process, as the processes
        share them (the database); ``[]`` when this process is alone (then the engine's own
        count is the whole truth)."""

    @abstractmethod
    def request_cancel(self, owner: str, message_ids: list[str]) -> None:
        """Ask the processes running these replies to cancel them. Returns at once;
        delivery happens in the background (retried for a bounded time)."""
