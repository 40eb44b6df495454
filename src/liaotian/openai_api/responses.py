"""The Responses API (``/v1/responses``) on the chat engine."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from liaotian.openai_api.common import ApiError, ApiRoute, api_owner

router = APIRouter(route_class=ApiRoute)


@router.post("/responses")
async def create_response(request: Request) -> Response:
    await api_owner(request)
    raise ApiError(501, "not implemented yet", type_="server_error")
