"""The ASGI application: routes, the lifespan that owns shared resources, security headers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.datastructures import Headers
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liaotian import (
    __version__,
    account_routes,
    admin_live_routes,
    admin_routes,
    attachment_routes,
    auth_routes,
    import_routes,
    openai_api,
    route_access,
    share_routes,
    usage_routes,
)
from liaotian.auth import HostPolicy
from liaotian.connection import Connection
from liaotian.gate import Kind, SessionFactory, run_session
from liaotian.openai_api.common import ApiCors
from liaotian.seed import SeedConnection
from liaotian.services import Services, services_of
from liaotian.settings import Settings
from liaotian.transport import Drain

log = logging.getLogger(__name__)

# The page, built from web/ by `npm run build` (scripts/setup runs it); never committed.
DIST = Path(__file__).parent / "web" / "dist"
NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>liaotian: page not built</title></head>
<body><h1>liaotian</h1>
<p>The page's assets are not built: run <code>scripts/setup</code> (it runs
<code>npm ci</code> and <code>npm run build</code> in <code>web/</code>), then reload.</p>
<p>页面资源尚未构建：请运行 <code>scripts/setup</code>，然后刷新。</p>
</body></html>
"""
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


class HashedAssets(StaticFiles):
    """The build's assets: their names carry a content hash, so they can be cached forever."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


class HostCheck:
    """Refuses a request whose ``Host`` the server does not answer to (DNS rebinding):
    HTTP gets 400, a WebSocket handshake 1008 before accept (HTTP 403).

    The outermost layer, so a refused request costs nothing else. ``/ws`` and
    ``/ws/chat/…`` never reach it (see :class:`LiaotianApp`): the gate checks their
    ``Host`` with the same :class:`~liaotian.auth.HostPolicy`.
    """

    def __init__(self, app: ASGIApp, hosts: HostPolicy) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.hosts.allows(
            Headers(scope=scope).get("host")
        ):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
                return
            response = _error(
                400,
                "host_not_allowed",
                "this server does not answer to the host name in the request's Host header; "
                "its operator can add the name to allowed_hosts (LIAOTIAN_ALLOWED_HOSTS)",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


OBSERVERS_ONLY = (
    "/metrics and /readyz answer clients on this machine only: send "
    "'Authorization: Bearer <metrics_token>', or set metrics_access = \"any\""
)


class SecurityHeaders:
    """CSP with no inline script and no remote origins, plus the usual hardening headers,
    on every HTTP response that does not set them itself.

    Plain ASGI, not BaseHTTPMiddleware: that one moves every chunk of a streamed body
    through a memory stream and a task of its own, which cost the API's event streams
    ~60 µs of CPU per token (bench scenario 9)."""

    HEADERS = (
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in self.HEADERS if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


SEED_PREFIX = "/ws/chat/"


class LiaotianApp(FastAPI):
    """FastAPI for the page and the HTTP routes; the WebSocket routes (``/ws``, protocol
    v1, and ``/ws/chat/{client_id}``, the seed's) are dispatched before its middleware and
    router.

    Each layer there stays in memory for a connection's whole life (three
    ``AsyncExitStack``s, the middleware frames, the route's wrappers: about 12 of the
    40 KiB tracemalloc found per idle connection) and sits between every frame and the
    server, for nothing a WebSocket session uses. The gate
    (:func:`~liaotian.gate.run_session`) does every check of the handshake itself. Other
    WebSocket paths go to FastAPI as before (which refuses them).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            route = _websocket_route(scope)
            if route is not None:
                scope["app"] = self
                services: Services = self.state.services
                await run_session(scope, receive, send, services, *route)
                return
        await super().__call__(scope, receive, send)


def _websocket_route(scope: Scope) -> tuple[str, Kind, SessionFactory] | None:
    """The client id, protocol and session of a WebSocket path; None for other paths."""
    path = _route_path(scope)
    if path == "/ws":
        return _query_value(scope, "client_id"), "v1", Connection
    if path.startswith(SEED_PREFIX):
        client_id = path[len(SEED_PREFIX) :]
        if client_id and "/" not in client_id:
            return client_id, "seed", SeedConnection
    return None


def _route_path(scope: Scope) -> str:
    """The path without the root path (as Starlette's router matches it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def _query_value(scope: Scope, name: str) -> str:
    """The last value of query parameter ``name`` ("" if absent), as Starlette reads it."""
    query = scope.get("query_string", b"").decode("latin-1")
    value = ""
    for key, item in parse_qsl(query, keep_blank_values=True):
        if key == name:
            value = item
    return value


def create_app(settings: Settings, drain: Drain | None = None) -> LiaotianApp:
    """The liaotian app for ``settings``; resources live from start-up to shutdown.

    ``drain`` is the server's (``liaotian.server``): after its sockets drained on shutdown,
    the replies get what is left of ``shutdown_grace``, not all of it again.
    """
    server_drain = drain if drain is not None else Drain(settings.shutdown_grace)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.start(settings)
        app.state.services = services
        # Draining sockets must not take new replies, or a busy socket would never close.
        server_drain.on_begin(services.engine.stop_accepting)
        log.info(
            "liaotian %s ready; default model %s",
            __version__,
            services.providers.default_model,
        )
        try:
            yield
        finally:
            await services.close(server_drain.time_left())

    app = LiaotianApp(
        title="liaotian",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HostCheck, hosts=HostPolicy(settings))
    app.include_router(auth_routes.router)
    app.include_router(attachment_routes.router)
    app.include_router(import_routes.router)
    app.include_router(share_routes.router)
    app.include_router(openai_api.router)
    app.include_router(account_routes.router)
    app.include_router(usage_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(admin_live_routes.router)
    route_access.install(app)
    if settings.api_cors_origins:
        app.add_middleware(ApiCors, origins=settings.api_cors_origins)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Ready: the database answers and the providers are loaded (503 otherwise).

        403 for a client that may not observe (:meth:`Authenticator.may_observe`).
        """
        services = services_of(request)
        if not services.auth.may_observe(request):
            return _error(403, "forbidden", OBSERVERS_ONLY)
        checks: dict[str, object] = {}
        ready = True
        try:
            await services.store.ping()
            checks["database"] = "ok"
        except Exception as exc:
            ready = False
            checks["database"] = f"error: {type(exc).__name__}"
        checks["providers"] = services.providers.status()
        checks["backplane"] = services.engine.backplane.status()
        checks["running_replies"] = services.engine.running_count
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus metrics of this process; 403 for a client that may not observe."""
        services = services_of(request)
        if not services.auth.may_observe(request):
            return _error(403, "forbidden", OBSERVERS_ONLY)
        registry = services.metrics
        return Response(registry.render(), media_type=registry.content_type)

    @app.get("/", include_in_schema=False)
    @app.get("/c/{conversation_id}", include_in_schema=False)
    async def index() -> Response:
        """The page; /c/<id> opens a conversation (the page reads the id from its URL)."""
        page = DIST / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT_PAGE, status_code=503)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount("/assets", HashedAssets(directory=DIST / "assets", check_dir=False), name="assets")
    return app
