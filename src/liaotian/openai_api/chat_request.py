"""A Chat Completions request, read and translated into the engine's :class:`SendOptions`.

:class:`ChatCompletionRequest` is the body (pydantic, strict types, unknown fields
ignored: OpenAI adds fields often, and a client that sends a newer one should still be
answered). :func:`send_options` refuses what liaotian does not do, with a 400 naming the
parameter, and maps the rest: system and developer messages become the system prompt,
earlier user and assistant messages the stored ``prior`` turns, the last (user) message
the message answered. docs/api.md "POST /v1/chat/completions" lists every field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from liaotian.engine import SendOptions
from liaotian.openai_api.common import ApiError
from liaotian.providers import ModelInfo

UNSUPPORTED_PARAMETER = "unsupported_parameter"
IMAGES_LATER = (
    "images are not taken by the API yet; send them through the page (or the Python "
    "client), or send text only"
)
THINKING_OFF = frozenset({"none", "minimal"})

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class ContentPart(_Body):
    """One part of a message's content: only ``text`` (and an assistant's ``refusal``)."""

    type: str
    text: str | None = None
    refusal: str | None = None


def _content(value: Any) -> Any:
    """A message's content as a string, a list of :class:`ContentPart` or None; errors
    name the content itself (pydantic would name the union's member types in ``param``)."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _bad_content("must be a string, a list of content parts or null")
    parts = []
    for number, part in enumerate(value):
        try:
            parts.append(ContentPart.model_validate(part))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(name) for name in first["loc"]) or "part"
            raise _bad_content(f"part {number}: {where}: {first['msg']}") from None
    return parts


def _bad_content(why: str) -> PydanticCustomError:
    # Not ValueError: pydantic would put "Value error, " before the message.
    return PydanticCustomError("invalid_content", "{why}", {"why": why})


class InputMessage(_Body):
    role: str
    content: Annotated[str | list[ContentPart] | None, BeforeValidator(_content)] = None


class StreamOptions(_Body):
    include_usage: bool | None = None


class ChatCompletionRequest(_Body):
    """The fields liaotian reads; others are accepted and ignored (docs/api.md)."""

    model: str
    messages: list[InputMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    store: bool | None = None
    reasoning_effort: ReasoningEffort | None = None
    # Qwen's (DashScope's compatible mode) own, which clients send through extra_body.
    enable_thinking: bool | None = None
    thinking_budget: int | None = Field(default=None, ge=1)
    enable_search: bool | None = None
    # Read only to refuse what liaotian cannot do.
    n: int | None = Field(default=None, ge=1)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def refuse_unsupported(body: ChatCompletionRequest) -> None:
    """Raise a 400 ``unsupported_parameter`` naming the first field asking for something
    liaotian does not do (several choices, tools, structured output, log probabilities,
    audio, predicted output)."""
    if body.n is not None and body.n > 1:
        _unsupported("n", "one choice per request: n must be 1")
    if body.tools and body.tool_choice != "none":
        _unsupported("tools", "tools (function calling) are not supported yet")
    if body.functions and body.function_call != "none":
        _unsupported("functions", "functions (function calling) are not supported yet")
    if body.response_format is not None and body.response_format.get("type") != "text":
        _unsupported(
            "response_format", "only text answers: response_format must be {'type': 'text'}"
        )
    if body.logprobs:
        _unsupported("logprobs", "log probabilities are not available")
    if body.modalities is not None and body.modalities != ["text"]:
        _unsupported("modalities", "only text answers: modalities must be ['text']")
    if body.audio is not None:
        _unsupported("audio", "audio answers are not supported")
    if body.prediction is not None:
        _unsupported("prediction", "predicted outputs are not supported")


def _unsupported(param: str, why: str) -> None:
    raise ApiError(400, f"{param}: {why}", code=UNSUPPORTED_PARAMETER, param=param)


def send_options(
    body: ChatCompletionRequest, model: ModelInfo, *, max_message_chars: int
) -> SendOptions:
    """What to ask the engine for ``body`` (answered by ``model``); raises
    :class:`ApiError` 400 for an unsupported field, role or content, a last message that
    is not the user's, and an empty or too long last message."""
    refuse_unsupported(body)
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, given in enumerate(body.messages):
        text = _text(given, index)
        if given.role in ("system", "developer"):
            system.append(text)
        else:
            turns.append((given.role, text))
    last = len(body.messages) - 1
    if body.messages[last].role != "user":
        raise ApiError(
            400,
            "the last message must be the user's: it is the one answered",
            code="invalid_value",
            param=f"messages[{last}].role",
        )
    message = turns[-1][1]
    if not message.strip():
        raise ApiError(
            400, "the last message is empty", code="empty_message", param=f"messages[{last}]"
        )
    if len(message) > max_message_chars:
        raise ApiError(
            400,
            f"the last message is longer than {max_message_chars} characters (max_message_chars)",
            code="message_too_long",
            param=f"messages[{last}]",
        )
    joined = "\n\n".join(part for part in system if part.strip())
    return SendOptions(
        message=message,
        model=body.model,
        system_prompt=joined or None,
        temperature=body.temperature,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        thinking=_thinking(body, model),
        thinking_budget=body.thinking_budget,
        search=body.enable_search,
        prior=tuple(turns[:-1]),
        ephemeral=not body.store,
    )


def _thinking(body: ChatCompletionRequest, model: ModelInfo) -> bool | None:
    """``enable_thinking`` as asked (the engine refuses it for a model that cannot);
    ``reasoning_effort``, which generic clients send to any model, only where thinking
    can be switched (elsewhere the model's own way is kept)."""
    if body.enable_thinking is not None:
        return body.enable_thinking
    capabilities = model.capabilities
    if body.reasoning_effort is None or not capabilities.thinking or capabilities.thinking_fixed:
        return None
    return body.reasoning_effort not in THINKING_OFF


def _text(message: InputMessage, index: int) -> str:
    """A message's text; raises 400 for a role or content liaotian does not take."""
    where = f"messages[{index}]"
    if message.role in ("tool", "function"):
        raise ApiError(
            400,
            f"{where}.role: {message.role} messages are not supported (liaotian calls no tools)",
            code="unsupported_role",
            param=f"{where}.role",
        )
    if message.role not in ("system", "developer", "user", "assistant"):
        raise ApiError(
            400,
            f"{where}.role: must be system, developer, user or assistant",
            code="invalid_value",
            param=f"{where}.role",
        )
    content = message.content
    if content is None:
        if message.role != "assistant":
            raise ApiError(
                400, f"{where}.content: missing", code="invalid_value", param=f"{where}.content"
            )
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for number, part in enumerate(content):
        param = f"{where}.content[{number}]"
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif part.type == "refusal" and message.role == "assistant" and part.refusal is not None:
            texts.append(part.refusal)  # what the assistant said, as far as the model knows
        elif part.type in ("image_url", "input_image", "image"):
            raise ApiError(400, IMAGES_LATER, code="unsupported_content", param=param)
        else:
            raise ApiError(
                400,
                f"{param}: content of type {part.type!r} is not supported (text only)",
                code="unsupported_content",
                param=param,
            )
    return "\n".join(texts)
