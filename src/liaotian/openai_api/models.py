"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models liaotian serves.

Each is OpenAI's model object (``id``, ``object``, ``created``, ``owned_by``: the provider)
with liaotian's own ``liaotian`` member: whether it is available (and why not), what it
can do (thinking, search, vision…) and whether it is the default.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from liaotian.errors import ModelNotFound
from liaotian.openai_api.common import ApiRoute, api_owner
from liaotian.providers import ModelInfo
from liaotian.services import services_of

router = APIRouter(route_class=ApiRoute)


def model_object(model: ModelInfo, default: str) -> dict[str, Any]:
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.provider,
        "liaotian": {
            "available": model.available,
            "reason": model.reason,
            "capabilities": model.capabilities.to_wire(),
            "default": model.id == default,
        },
    }


@router.get("/models")
async def list_models(request: Request) -> JSONResponse:
    """Every model the caller's role may use (``role_models``), the default first."""
    owner = await api_owner(request)
    services = services_of(request)
    default = services.providers.default_model
    allowed = await services.engine.allowed_models(owner)
    models = sorted(allowed, key=lambda model: model.id != default)
    return JSONResponse(
        {"object": "list", "data": [model_object(model, default) for model in models]}
    )


@router.get("/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> JSONResponse:
    """One model; 404 (``model_not_found``) for a model liaotian does not serve or the
    caller's role may not use."""
    owner = await api_owner(request)
    services = services_of(request)
    providers = services.providers
    for model in await services.engine.allowed_models(owner):
        if model.id == model_id:
            return JSONResponse(model_object(model, providers.default_model))
    raise ModelNotFound(f"the model {model_id!r} does not exist here; GET /v1/models lists them")
