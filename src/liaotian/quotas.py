"""Quotas and model access per role and account (docs/administration.md, "Quotas").

An account's effective limits are its role's (``settings.role_limits``) overridden one by
one by its own (``User.limits``; an own ``None`` lifts the limit). Open-mode owners are
role ``user`` with no own limits. :meth:`Quotas.check` refuses a new reply with
:class:`~liaotian.errors.QuotaExceeded` before anything is stored; it reads the ledger
(one indexed range, only when a ledger-counted limit applies) and the caller's count of
replies streaming now. The clock is ``Quotas.now`` (tests set it; days are UTC).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from liaotian.errors import ModelNotAllowed, QuotaExceeded
from liaotian.settings import LIMIT_NAMES, Settings
from liaotian.store.accounts import user_id_of
from liaotian.store.usage import Spend, UsageBook, month_start

USER_ROLE = "user"
MESSAGES = {
    "tokens_per_day": "daily token quota reached, resets at 00:00 UTC",
    "messages_per_day": "daily message quota reached, resets at 00:00 UTC",
    "cost_per_month": "monthly cost quota reached, resets on the 1st at 00:00 UTC",
}

Limits = dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Policy:
    """What applies to one owner: its role and effective limits (None: no limit)."""

    role: str
    limits: Limits


def effective_limits(
    settings: Settings, role: str, own: Mapping[str, float | None] | None
) -> Limits:
    """The role's limits with the account's own ones over them, key by key."""
    role_limits = settings.role_limits.get(role)  # type: ignore[call-overload]
    limits: Limits = {
        name: None if role_limits is None else getattr(role_limits, name) for name in LIMIT_NAMES
    }
    for name, value in (own or {}).items():
        if name in limits:
            limits[name] = value
    return limits


def model_allowed(settings: Settings, role: str, model_id: str) -> bool:
    """Whether ``role`` may use ``model_id`` (``role_models``: "*" any; a role absent: any)."""
    allowed = settings.role_models.get(role)  # type: ignore[call-overload]
    return allowed is None or "*" in allowed or model_id in allowed


def _next_day(today: date) -> date:
    return today + timedelta(days=1)


def _next_month(today: date) -> date:
    first = month_start(today)
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _wire_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


class Quotas:
    """Looks up an owner's policy, refuses what it does not allow, and reports usage
    against limits."""

    def __init__(self, settings: Settings, book: UsageBook) -> None:
        self.settings = settings
        self.book = book
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def policy(self, owner: str) -> Policy:
        """The owner's role and effective limits: one query by account id (none for an
        open-mode owner, which is role ``user``)."""
        user_id = user_id_of(owner)
        role, own = USER_ROLE, None
        if user_id is not None:
            found = await self.book.account(user_id)
            if found is not None:
                role, own = found
        return Policy(role, effective_limits(self.settings, role, own))

    def check_model(self, policy: Policy, model_id: str) -> None:
        """Raise ModelNotAllowed when the owner's role may not use the model."""
        if not model_allowed(self.settings, policy.role, model_id):
            raise ModelNotAllowed(
                f"your account ({policy.role}) may not use the model {model_id}; "
                "pick another one from the list"
            )

    def allowed_models(self, role: str, model_ids: Iterable[str]) -> set[str]:
        return {model_id for model_id in model_ids if model_allowed(self.settings, role, model_id)}

    async def check(
        self, owner: str, policy: Policy, streaming: Callable[[], Awaitable[int]]
    ) -> None:
        """Raise QuotaExceeded when a limit of ``policy`` is reached; ``streaming`` counts
        the owner's replies streaming now (called only with a ``concurrent_replies``
        limit). Nothing is read for an owner without limits."""
        limits = policy.limits
        if any(limits[name] is not None for name in MESSAGES):
            now = self.now()
            spend = await self.book.spend(owner, now.date())
            for name, used in self._used(spend).items():
                allowed = limits[name]
                if allowed is not None and used >= allowed:
                    self._refuse(name, allowed, used, now)
        allowed = limits["concurrent_replies"]
        if allowed is not None:
            used = await streaming()
            if used >= allowed:
                raise QuotaExceeded(
                    f"at most {_number(allowed)} answers can stream at once; "
                    "wait for one to finish or cancel one",
                    quota=self._wire(allowed, used, None) | {"limit": "concurrent_replies"},
                    retry_after=1,
                )

    @staticmethod
    def _used(spend: Spend) -> dict[str, float]:
        return {
            "tokens_per_day": spend.tokens_today,
            "messages_per_day": spend.replies_today,
            "cost_per_month": spend.cost_month,
        }

    def _resets_at(self, name: str, now: datetime) -> datetime | None:
        if name == "concurrent_replies":
            return None
        today = now.date()
        return _midnight(_next_month(today) if name == "cost_per_month" else _next_day(today))

    def _refuse(self, name: str, allowed: float, used: float, now: datetime) -> None:
        resets_at = self._resets_at(name, now)
        assert resets_at is not None
        raise QuotaExceeded(
            MESSAGES[name],
            quota={"limit": name, **self._wire(allowed, used, resets_at)},
            retry_after=max(1, round((resets_at - now).total_seconds())),
        )

    @staticmethod
    def _wire(allowed: float | None, used: float, resets_at: datetime | None) -> dict[str, Any]:
        return {
            "allowed": None if allowed is None else _number(allowed),
            "used": _number(used),
            "remaining": None if allowed is None else _number(max(0, allowed - used)),
            "resets_at": None if resets_at is None else _wire_time(resets_at),
        }

    async def status(self, owner: str, policy: Policy, streaming: int) -> dict[str, Any]:
        """Each limit as ``{allowed, used, remaining, resets_at}`` (``allowed`` None: no
        limit) for ``GET /account/usage``."""
        now = self.now()
        used = self._used(await self.book.spend(owner, now.date()))
        used["concurrent_replies"] = streaming
        return {
            name: self._wire(policy.limits[name], used[name], self._resets_at(name, now))
            for name in LIMIT_NAMES
        }

    async def summaries(
        self, accounts: Iterable[tuple[int, str, Mapping[str, float | None] | None]]
    ) -> dict[int, dict[str, Any]]:
        """For the admin's list of accounts, given ``(user id, role, own limits)`` of each:
        ``{user id: {"effective": {limit: number | None}, "today": {tokens, replies,
        cost}}}``. One query for all of them (``ix_usage_user_day``)."""
        listed = list(accounts)
        today = await self.book.users_today(
            [user_id for user_id, _, _ in listed], self.now().date()
        )
        return {
            user_id: {
                "effective": {
                    name: None if value is None else _number(value)
                    for name, value in effective_limits(self.settings, role, own).items()
                },
                "today": today[user_id],
            }
            for user_id, role, own in listed
        }
