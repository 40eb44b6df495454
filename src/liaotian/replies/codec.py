"""Reply events as plain dicts (JSON-ready), for another process through the backplane."""

from __future__ import annotations

from typing import Any

from liaotian.replies.log import Delta, Done, ReasoningDelta, ReplyEvent, SourcesFound, Started

_TUPLE_FIELDS = {"replaces", "user_attachments", "sources", "user_siblings", "reply_siblings"}


def event_to_wire(event: ReplyEvent) -> dict[str, Any]:
    """A plain dict for another process (the inverse of :func:`event_from_wire`)."""
    if isinstance(event, Delta):
        return {"k": "d", "seq": event.seq, "text": event.text}
    if isinstance(event, ReasoningDelta):
        return {"k": "r", "seq": event.seq, "text": event.text}
    wire: dict[str, Any] = {
        field: list(value) if field in _TUPLE_FIELDS else value
        for field in type(event).__slots__
        if (value := getattr(event, field)) is not None or field in ("seq",)
    }
    kind = {Started: "s", SourcesFound: "S", Done: "e"}[type(event)]
    return {"k": kind, **wire}


def event_from_wire(wire: dict[str, Any]) -> ReplyEvent:
    """Rebuild an event from :func:`event_to_wire`'s dict. Raises KeyError/TypeError if bad.

    Fields a newer process added and this one does not know are dropped, so processes of
    two versions can share a backplane during a rolling upgrade.
    """
    kind = wire.pop("k")
    if kind == "d":
        return Delta(**wire)
    if kind == "r":
        return ReasoningDelta(**wire)
    cls: type[Started | SourcesFound | Done]
    if kind == "s":
        cls = Started
    elif kind == "S":
        cls = SourcesFound
    elif kind == "e":
        cls = Done
    else:
        raise TypeError(f"unknown event kind {kind!r}")
    known = set(cls.__slots__)
    fields: dict[str, Any] = {
        name: tuple(value) if name in _TUPLE_FIELDS else value
        for name, value in wire.items()
        if name in known
    }
    return cls(**fields)
