"""The backplane of a process alone (``memory://``): logs and the owner bus, in memory."""

from __future__ import annotations

import logging

from liaotian.backplane.base import Backplane, CancelHandler, ConversationChange, OwnerBus
from liaotian.replies.log import ReplyHub, ReplyKey, ReplyLog
from liaotian.store import Store

log = logging.getLogger(__name__)


class MemoryBackplane(Backplane):
    """Shares nothing: this process is the only one. The base of the other backends, which
    keep their process's logs and owner bus the same way."""

    scheme = "memory"

    def __init__(self, store: Store, *, log_ttl: float) -> None:
        self._store = store
        self.hub = ReplyHub(log_ttl)
        self.bus = OwnerBus()
        self._cancel_local: CancelHandler = lambda owner, message_ids: None

    async def start(self, cancel_local: CancelHandler) -> None:
        """Alone, every reply still marked streaming was left by an earlier stop of this
        very server: mark them interrupted."""
        self._cancel_local = cancel_local
        interrupted = await self._store.interrupt_streaming()
        if interrupted:
            log.warning("marked %d replies interrupted by an earlier stop", interrupted)

    async def close(self) -> None:
        return None

    def status(self) -> dict[str, object]:
        return {"kind": "memory"}

    def create_log(self, key: ReplyKey) -> ReplyLog:
        return self.hub.create(key)

    def live_log(self, owner: str, message_id: str) -> ReplyLog | None:
        return self.hub.get(owner, message_id)

    def publish_reply(self, reply_log: ReplyLog) -> None:
        self.bus.publish(reply_log.key.owner, reply_log)

    async def replica(self, key: ReplyKey, *, streaming: bool) -> ReplyLog | None:
        return None

    def subscribe(self, owner: str, listener: OwnerBus.Listener) -> None:
        self.bus.subscribe(owner, listener)

    def unsubscribe(self, owner: str, listener: OwnerBus.Listener) -> None:
        self.bus.unsubscribe(owner, listener)

    def publish_change(self, owner: str, change: ConversationChange) -> None:
        self.bus.publish(owner, change)

    async def shared_streaming(
        self, owner: str, *, message_id: str | None = None, conversation_id: str | None = None
    ) -> list[str]:
        return []

    def request_cancel(self, owner: str, message_ids: list[str]) -> None:
        self._cancel_local(owner, message_ids)
