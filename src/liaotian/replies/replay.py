"""A reply log completed, or rebuilt, from the reply the database stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from liaotian.replies.log import Delta, Done, ReasoningDelta, ReplyLog, SourcesFound, Started

if TYPE_CHECKING:
    from liaotian.store.repository import MessageInfo


def finish_from_message(reply_log: ReplyLog, info: MessageInfo) -> None:
    """Complete ``reply_log`` from the stored reply ``info`` (which has ended).

    An empty log becomes a rebuilt one (``started``, the reasoning, the sources, the whole
    text, ``done``: its seqs are not the original ones); a log that has part of a part gets
    the rest of each part it lacks, then ``done``.
    """
    if reply_log.next_seq == 0:
        reply_log.rebuilt = True
        reply_log.append(
            Started(
                seq=0,
                user_message_id="",
                model=info.model or "",
                title="",
                created_at=info.created_at.timestamp(),
            )
        )
    reasoning, have = info.reasoning or "", reply_log.reasoning
    if reasoning.startswith(have) and len(reasoning) > len(have):
        reply_log.append(ReasoningDelta(seq=reply_log.next_seq, text=reasoning[len(have) :]))
    if info.sources and not reply_log.sources:
        reply_log.append(SourcesFound(seq=reply_log.next_seq, sources=info.sources))
    have = reply_log.text
    if info.content.startswith(have) and len(info.content) > len(have):
        reply_log.append(Delta(seq=reply_log.next_seq, text=info.content[len(have) :]))
    wire = info.to_wire()
    reply_log.append(
        Done(
            seq=reply_log.next_seq,
            status=info.status,
            finish_reason=info.finish_reason,
            usage=wire["usage"],
            ttft_ms=info.ttft_ms,
            duration_ms=info.duration_ms,
            error=wire["error"],
            thinking_ms=info.thinking_ms,
        )
    )
