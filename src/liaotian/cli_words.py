"""Plain words for the ``liaotian`` command's messages.

The terminal shows people sentences, never protocol codes (``[invalid_frame]``) or frame
names (``models.list``): programs that need the code read ``LiaotianError.code`` from
:mod:`liaotian.client` instead.
"""

from __future__ import annotations

from liaotian.errors import LiaotianError

# Server messages written for protocol clients, said again for people; by error code.
_PLAIN = {
    "model_not_found": "the server has no such model (liaotian models lists them)",
    "frame_too_large": "the message is too large for this server",
    "empty_message": "the message is empty",
}

TOKEN_HOWTO = (
    "To sign in, create a token on the server with 'liaotian token create USER', then pass "
    "it with --token or set LIAOTIAN_TOKEN."
)


def describe(error: LiaotianError) -> str:
    """One line saying what went wrong, for a person."""
    return _PLAIN.get(error.code, error.message)


def unknown_model(name: str, known: list[str]) -> str:
    """The server has no model ``name``; say which it has."""
    listed = ", ".join(known) if known else "none"
    return (
        f"the server has no model {name!r}; it has: {listed} "
        "(liaotian models shows which are ready)"
    )
