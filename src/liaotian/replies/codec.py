"""Reply events as plain dicts (JSON-ready), for another process through the backplane."""

from __future__ import annotations

from typing import Any

from liaotian.replies.log import Delta, Done, ReplyEvent, Started


def event_to_wire(event: ReplyEvent) -> dict[str, Any]:
    """A plain dict for another process (the inverse of :func:`event_from_wire`)."""
    if isinstance(event, Delta):
        return {"k": "d", "seq": event.seq, "text": event.text}
    if isinstance(event, Started):
        wire = {field: getattr(event, field) for field in Started.__slots__}
        wire["replaces"] = list(event.replaces)
        return {"k": "s", **wire}
    return {"k": "e", **{field: getattr(event, field) for field in Done.__slots__}}


def event_from_wire(wire: dict[str, Any]) -> ReplyEvent:
    """Rebuild an event from :func:`event_to_wire`'s dict. Raises KeyError/TypeError if bad."""
    kind = wire.pop("k")
    if kind == "d":
        return Delta(**wire)
    if kind == "s":
        wire["replaces"] = tuple(wire.get("replaces", ()))
        return Started(**wire)
    if kind == "e":
        return Done(**wire)
    raise TypeError(f"unknown event kind {kind!r}")
