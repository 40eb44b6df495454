"""Plain words for the ``liaotian`` command's messages.

The terminal shows people sentences, never protocol codes (``[invalid_frame]``) or frame
names (``models.list``): programs that need the code read ``LiaotianError.code`` from
:mod:`liaotian.client` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from liaotian.errors import LiaotianError, UnsupportedCapability

if TYPE_CHECKING:
    from liaotian.client import Capabilities, SourceInfo

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


# What a model cannot do, by the capability an ``unsupported_capability`` error names.
_CANNOT = {
    "vision": "cannot read images",
    "thinking": "cannot think, or its thinking cannot be switched on or off",
    "search": "cannot search the web",
}

# Why an image upload was refused, by error code; {name} is the file's name.
_UPLOAD_REFUSED = {
    "attachment_too_large": "{name} is too large for this server",
    "unsupported_media_type": "{name} is not an image this server takes (PNG, JPEG, WEBP or GIF)",
    "invalid_image": "{name} is not a readable image (damaged or cut short?)",
}


def describe(error: LiaotianError, model: str | None = None) -> str:
    """One line saying what went wrong, for a person (``model``: the one asked, if known)."""
    if isinstance(error, UnsupportedCapability) and error.capability in _CANNOT:
        who = f"the model {model}" if model else "this model"
        return f"{who} {_CANNOT[error.capability]} (liaotian models shows what each model can do)"
    return _PLAIN.get(error.code, error.message)


def upload_refused(name: str, error: LiaotianError) -> str:
    """One line saying why the server refused the image file ``name``."""
    template = _UPLOAD_REFUSED.get(error.code)
    if template is not None:
        return template.format(name=name)
    return f"cannot send {name}: {describe(error)}"


# Why an import was refused, by error code; {name} is the file's name.
_IMPORT_REFUSED = {
    "import_too_large": "{name} is too large for this server (its max_import_bytes)",
    "imports_busy": "the server is busy importing other files; try again in a moment",
}


def import_refused(name: str, error: LiaotianError) -> str:
    """One line saying why the server refused to import the file ``name``."""
    template = _IMPORT_REFUSED.get(error.code)
    if template is not None:
        return template.format(name=name)
    if error.code == "invalid_import":
        return f"cannot import {name}: {error.message}"
    return f"cannot import {name}: {describe(error)}"


def file_unreadable(name: str, error: OSError) -> str:
    """One line saying why the image file ``name`` cannot be read here."""
    if isinstance(error, FileNotFoundError):
        return f"no such file: {name}"
    if isinstance(error, IsADirectoryError):
        return f"{name} is a directory, not a file"
    if isinstance(error, PermissionError):
        return f"cannot read {name}: permission denied"
    return f"cannot read {name}: {error.strerror or error}"


def abilities(capabilities: Capabilities | None) -> str:
    """What a model can do, in words: ``can: images, thinking, search``."""
    if capabilities is None:
        return ""
    can = []
    if capabilities.get("vision"):
        can.append("images")
    if capabilities.get("thinking"):
        if capabilities.get("thinking_fixed"):
            can.append("thinking (always)")
        elif capabilities.get("thinking_default"):
            can.append("thinking (on by default)")
        else:
            can.append("thinking")
    if capabilities.get("search"):
        can.append("search")
    return "can: " + (", ".join(can) if can else "text only")


def source_lines(sources: Sequence[SourceInfo]) -> list[str]:
    """A reply's web sources as a numbered list, as the answer cites them:
    ``[1] Title — https://...``."""
    return [
        f"[{source['index']}] {source['title']} — {source['url']}"
        if source["title"]
        else f"[{source['index']}] {source['url']}"
        for source in sources
    ]


def unknown_model(name: str, known: list[str]) -> str:
    """The server has no model ``name``; say which it has."""
    listed = ", ".join(known) if known else "none"
    return (
        f"the server has no model {name!r}; it has: {listed} "
        "(liaotian models shows which are ready)"
    )
