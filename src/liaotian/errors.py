"""Every error liaotian raises on purpose, in one tree.

Each error carries a stable ``code`` (part of the public protocol), a human message and
whether retrying the same request may succeed. Errors are raised deep inside and translated
once, at the edge: an ``error`` frame (protocol v1), a ``status: error`` frame (seed
protocol), an HTTP status, or a CLI message.

::

    LiaotianError
    ├── ConfigError                    settings are missing or wrong (start-up refuses)
    ├── ProtocolError                  a client frame cannot be understood
    │   ├── InvalidJson                    not JSON / not UTF-8 text
    │   ├── InvalidFrame                   JSON, but wrong shape, types or values
    │   ├── UnknownFrameType               ``type`` names no frame
    │   ├── EmptyMessage                   a chat message with no text
    │   └── FrameTooLarge                  over the configured frame size
    ├── RequestError                   a well-formed request that cannot be served
    │   ├── NotFound                       no such conversation / reply / attachment for this owner
    │   ├── ConversationBusy               a reply is already streaming in that conversation
    │   ├── ShuttingDown                   the server is stopping; send to another one
    │   ├── ModelNotFound                  no provider serves the model
    │   ├── ProviderNotConfigured          the provider exists but lacks its key / URL
    │   ├── UnsupportedCapability          the model cannot do what was asked (images, …)
    │   ├── ShareLinksDisabled             the server's setting share_links is off
    │   ├── Forbidden                      the account's role may not do this (HTTP 403)
    │   ├── ModelNotAllowed                the account's role may not use the model
    │   └── LimitExceeded                  a configured limit was reached
    │       ├── TooManyConnections             connections per owner / in total
    │       ├── RateLimited                    messages per minute per owner
    │       ├── TooManyReplies                 concurrent replies per owner
    │       ├── QuotaExceeded                  a quota of the account (tokens, messages, cost)
    │       ├── SignInBusy                     too many password checks at once (HTTP 503)
    │       ├── AttachmentsBusy                too many images being checked at once (HTTP 503)
    │       └── ImportsBusy                    too many import files being read at once (HTTP 503)
    ├── AttachmentError                an uploaded file is refused (HTTP routes only)
    │   ├── AttachmentTooLarge             over max_attachment_bytes or max_attachment_pixels
    │   ├── UnsupportedMediaType           not an image, or not PNG / JPEG / WEBP / GIF
    │   └── InvalidImage                   an image of those formats that cannot be decoded
    ├── ImportRefused                  an import file is refused (HTTP routes only)
    │   ├── ImportTooLarge                 over max_import_bytes
    │   └── InvalidImport                  not JSON, or not a format liaotian imports
    ├── StoreError                     the database failed
    │   ├── StoreConflict                  a write collided with a concurrent one (a unique key)
    │   └── StoreUnavailable               the database is unreachable or refused the work
    └── ProviderError                  the model provider failed
        ├── ProviderAuthError              key rejected (401/403)
        ├── ProviderRateLimited            429 / throttled
        ├── ProviderUnavailable            5xx, connection refused or reset, bad stream
        ├── ProviderBadRequest             the provider rejected the request (4xx)
        ├── ProviderTimeout                connect, first token, silence or total timeout
        ├── ProviderInterrupted            the stream ended without a finish
        └── ProviderRepetition             the answer looped on one short text; it was stopped
"""

from __future__ import annotations


class LiaotianError(Exception):
    """Base of all liaotian errors; ``code`` is stable and documented in docs/protocol.md."""

    code = "internal_error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(LiaotianError):
    """Settings are missing or invalid; the message says what to fix."""

    code = "config_error"


class ProtocolError(LiaotianError):
    """A client frame could not be understood. The connection stays open."""

    code = "invalid_frame"


class InvalidJson(ProtocolError):
    code = "invalid_json"


class InvalidFrame(ProtocolError):
    code = "invalid_frame"


class UnknownFrameType(ProtocolError):
    code = "unknown_type"


class EmptyMessage(ProtocolError):
    code = "empty_message"


class FrameTooLarge(ProtocolError):
    code = "frame_too_large"


class NameTaken(InvalidFrame):
    """An account of that name exists already. HTTP 409."""

    code = "name_taken"


class RequestError(LiaotianError):
    """A valid request that cannot be served as asked."""

    code = "bad_request"


class NotFound(RequestError):
    """The resource does not exist *for this owner* (never says whether it exists at all)."""

    code = "not_found"


class ConversationBusy(RequestError):
    """A reply is already streaming in the conversation; wait for it or cancel it."""

    code = "conversation_busy"
    retryable = True


class ShuttingDown(RequestError):
    """The server is stopping: it finishes the replies it runs but starts no new one."""

    code = "shutting_down"
    retryable = True


class ModelNotFound(RequestError):
    code = "model_not_found"


class ProviderNotConfigured(RequestError):
    code = "provider_not_configured"


class UnsupportedCapability(RequestError):
    """The request asks the model for something it cannot do: ``capability`` names it
    (``vision``, ``thinking``, ``search``). Raised before the provider is called."""

    code = "unsupported_capability"

    def __init__(self, message: str, *, capability: str) -> None:
        super().__init__(message)
        self.capability = capability


class ShareLinksDisabled(RequestError):
    """Share links are off on this server (the setting ``share_links``)."""

    code = "share_links_disabled"


class Forbidden(RequestError):
    """The account may not do this: an admin route for a user, a disabled account. HTTP 403."""

    code = "forbidden"


class LastAdmin(RequestError):
    """The change would leave accounts without an active admin. HTTP 409."""

    code = "last_admin"


class ModelNotAllowed(RequestError):
    """The account's role may not use the model (the setting ``role_models``). Raised before
    anything is stored."""

    code = "model_not_allowed"


class LimitExceeded(RequestError):
    """A configured limit was reached; ``retry_after`` (seconds) says when to try again."""

    code = "limit_exceeded"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyConnections(LimitExceeded):
    code = "too_many_connections"


class RateLimited(LimitExceeded):
    code = "rate_limited"


class TooManyReplies(LimitExceeded):
    code = "too_many_replies"


class QuotaExceeded(LimitExceeded):
    """A quota of the account is used up; checked before the provider is called.

    ``quota`` is the wire form: ``{"limit": "tokens_per_day" | "messages_per_day" |
    "cost_per_month" | "concurrent_replies", "allowed": number, "used": number,
    "remaining": number, "resets_at": ISO 8601 UTC | null}``; ``retry_after`` is the
    seconds until ``resets_at``.
    """

    code = "quota_exceeded"
    retryable = False

    def __init__(
        self, message: str, *, quota: dict[str, object], retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.quota = quota


class SignInBusy(LimitExceeded):
    """Every password-check slot is taken and the queue is full; try again shortly."""

    code = "sign_in_busy"


class AttachmentsBusy(LimitExceeded):
    """Every image-checking slot is taken and the queue is full; try again shortly."""

    code = "attachments_busy"


class ImportsBusy(LimitExceeded):
    """Every import slot is taken and the queue is full; try again shortly."""

    code = "imports_busy"


class AttachmentError(LiaotianError):
    """An uploaded file is refused; the message says why."""

    code = "attachment_refused"


class AttachmentTooLarge(AttachmentError):
    """Over ``max_attachment_bytes``, or an image of more than ``max_attachment_pixels``."""

    code = "attachment_too_large"


class UnsupportedMediaType(AttachmentError):
    """Not an image, or an image in a format other than PNG, JPEG, WEBP and GIF."""

    code = "unsupported_media_type"


class InvalidImage(AttachmentError):
    """A PNG, JPEG, WEBP or GIF that cannot be decoded whole (truncated, corrupt)."""

    code = "invalid_image"


class ImportRefused(LiaotianError):
    """An import file is refused; nothing of it is stored (HTTP routes only)."""

    code = "import_refused"


class ImportTooLarge(ImportRefused):
    """The file is over ``max_import_bytes``."""

    code = "import_too_large"


class InvalidImport(ImportRefused):
    """Not JSON, or not liaotian's export or a ChatGPT export; the message says where."""

    code = "invalid_import"


class StoreError(LiaotianError):
    """The database failed. The store raises these, never its driver's or SQLAlchemy's."""

    code = "store_error"


class StoreConflict(StoreError):
    """A write collided with a concurrent one on a unique key (nothing was written)."""

    code = "store_conflict"
    retryable = True


class StoreUnavailable(StoreError):
    """The database could not be reached or refused the transaction (nothing was written)."""

    code = "store_unavailable"
    retryable = True


class ProviderError(LiaotianError):
    """The upstream model provider failed."""

    code = "provider_error"


class ProviderAuthError(ProviderError):
    code = "provider_auth"


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    retryable = True


class ProviderBadRequest(ProviderError):
    code = "provider_bad_request"


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    retryable = True


class ProviderInterrupted(ProviderError):
    code = "provider_interrupted"
    retryable = True


class ProviderRepetition(ProviderError):
    """The answer degenerated into the same short text repeated many times; it was stopped,
    its text kept. Asking again (sampling differs) may succeed."""

    code = "provider_repetition"
    retryable = True
