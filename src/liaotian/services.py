"""The process's shared resources, created in the app's lifespan and handed to handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import aiohttp
from starlette.requests import HTTPConnection

from liaotian.auth import Authenticator
from liaotian.backplane import Backplane, open_backplane
from liaotian.engine import ChatEngine
from liaotian.guards import Guards
from liaotian.metrics import Metrics
from liaotian.providers import ProviderContext, ProviderRegistry, provider_factories
from liaotian.settings import Settings
from liaotian.store import Store, create_engine
from liaotian.store.accounts import Accounts
from liaotian.store.attachments import AttachmentStore, reap_periodically
from liaotian.store.audit import AuditLog
from liaotian.store.migrate import upgrade
from liaotian.store.shares import ShareStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Services:
    """Everything a request handler may use. One instance per process."""

    settings: Settings
    store: Store
    http: aiohttp.ClientSession
    providers: ProviderRegistry
    engine: ChatEngine
    guards: Guards
    auth: Authenticator
    attachments: AttachmentStore
    shares: ShareStore
    audit: AuditLog
    attachment_reaper: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings, *, migrate: bool = True) -> Services:
        """Migrate the schema, open the database and HTTP pool, start the providers."""
        if migrate:
            await asyncio.to_thread(upgrade, settings.database_url)
        store = Store(create_engine(settings.database_url))
        auth = Authenticator(settings, Accounts(store.engine))
        try:
            await auth.start()
        except BaseException:
            await store.close()
            raise
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300),
            json_serialize=None,  # type: ignore[arg-type]  # bodies are pre-encoded with orjson
        )
        context = ProviderContext(settings=settings, http=http)
        metrics = Metrics()
        providers = ProviderRegistry(
            [
                provider
                for factory in provider_factories().values()
                for provider in factory(context)
            ],
            settings,
            metrics,
        )
        await providers.start()
        backplane = open_backplane(
            settings.effective_backplane_url, settings=settings, store=store, metrics=metrics
        )
        engine = ChatEngine(settings, store, providers, backplane, metrics)
        await engine.start()
        # The store's own transactions (on SQLite its one thread), not a second writer.
        attachments = AttachmentStore(store.database)
        reaper = asyncio.create_task(
            reap_periodically(attachments, settings.attachment_unused_ttl),
            name="liaotian-attachment-reaper",
        )
        return cls(
            settings=settings,
            store=store,
            http=http,
            providers=providers,
            engine=engine,
            guards=Guards(settings, metrics),
            auth=auth,
            attachments=attachments,
            shares=ShareStore(store.database),
            audit=AuditLog(store.engine),
            attachment_reaper=reaper,
        )

    @property
    def metrics(self) -> Metrics:
        return self.engine.metrics

    @property
    def backplane(self) -> Backplane:
        return self.engine.backplane

    async def close(self, grace: float = 0.0) -> None:
        if self.attachment_reaper is not None:
            self.attachment_reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.attachment_reaper
        await self.auth.close()
        await self.engine.shutdown(grace)
        await self.engine.backplane.close()
        await self.providers.close()
        await self.http.close()
        await self.store.close()


def services_of(connection: HTTPConnection) -> Services:
    """The Services of the app serving ``connection`` (a typed dependency)."""
    services: Services = connection.app.state.services
    return services
