"""The OpenAI-compatible HTTP API under ``/v1``: thin adapters onto the chat engine.

``GET /v1/models`` (:mod:`.models`), ``POST /v1/chat/completions``
(:mod:`.chat_completions`) and the Responses API (:mod:`.responses`) translate OpenAI's
requests into :class:`~liaotian.engine.SendOptions` and the engine's reply events into
OpenAI's objects and server-sent events; none of them owns a reply. What they share —
who the caller is, reading a capped JSON body, OpenAI's error format, server-sent
events that notice the client leaving — lives in :mod:`.common`. docs/api.md is the
specification.
"""

from __future__ import annotations

from fastapi import APIRouter

from liaotian.openai_api import chat_completions, models, responses

router = APIRouter(prefix="/v1")
router.include_router(models.router)
router.include_router(chat_completions.router)
router.include_router(responses.router)

__all__ = ["router"]
