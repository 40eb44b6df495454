"""``POST /v1/chat/completions``: OpenAI's Chat Completions on the chat engine."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from liaotian.openai_api.common import ApiError, ApiRoute, api_owner

router = APIRouter(route_class=ApiRoute)


@router.post("/chat/completions")
async def create_chat_completion(request: Request) -> Response:
    await api_owner(request)
    raise ApiError(501, "not implemented yet", type_="server_error")
