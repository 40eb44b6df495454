"""Accounts: users with argon2 passwords, sign-in sessions and API tokens.

Secrets (session cookies, API tokens) are random, shown once, and stored only as their
SHA-256; passwords only as argon2 hashes.

A user's conversations belong to the owner ``user/{id}`` (:func:`account_owner`), keyed by
the user's id, which is never reused: a user removed and created again under the same
name is a new owner and inherits nothing. Open-mode owners are client ids, which cannot
contain ``/`` (``liaotian.gate.CLIENT_ID``), so the two kinds of owner never collide.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from liaotian.errors import InvalidFrame, LastAdmin, NameTaken, NotFound, StoreConflict
from liaotian.settings import LIMIT_NAMES, ROLES
from liaotian.store.database import DATABASE_ERRORS, domain_error
from liaotian.store.models import Credential, User, aware, utcnow, wire_time

USER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MIN_PASSWORD = 8
SESSION = "session"
TOKEN = "token"
ADMIN = "admin"
USER = "user"
ACTIVE = "active"
DISABLED = "disabled"
PENDING = "pending"
TOKEN_PREFIX = "lt_"
SETTABLE_STATUSES = (ACTIVE, DISABLED)
"""The statuses an admin sets (``pending`` is only ever a sign-up's)."""
WHOLE_LIMITS = frozenset({"tokens_per_day", "messages_per_day", "concurrent_replies"})

Limits = dict[str, float | None]
"""An account's own limits: a name of :data:`~liaotian.settings.LIMIT_NAMES` to a number,
or to None (lifted for this account); a name absent follows the role."""

_hasher = PasswordHasher()
# Verifying an unknown user costs the same as a wrong password: no user enumeration.
_DUMMY_HASH = _hasher.hash("not a password of anybody")


ACCOUNT_OWNER_PREFIX = "user/"


def account_owner(user_id: int) -> str:
    """The owner id of the user ``user_id``'s conversations."""
    return f"{ACCOUNT_OWNER_PREFIX}{user_id}"


def user_id_of(owner: str) -> int | None:
    """The account id behind an owner ``user/{id}`` (:func:`account_owner`'s inverse);
    None for an open-mode owner."""
    tail = owner.removeprefix(ACCOUNT_OWNER_PREFIX)
    return int(tail) if tail != owner and tail.isascii() and tail.isdigit() else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: the user, and the credential it came with (for revocation)."""

    user: str
    user_id: int
    credential_id: int
    role: str = "user"
    kind: str = "session"
    """The credential's kind: ``session`` (the page's cookie) or ``token`` (an API token)."""

    @property
    def owner(self) -> str:
        return account_owner(self.user_id)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    id: int
    user: str
    kind: str
    name: str
    created_at: datetime
    revoked: bool


def check_user_name(name: str) -> str:
    """The name, or InvalidFrame saying what a name may be."""
    if not USER_NAME.fullmatch(name):
        raise InvalidFrame(
            "a user name is 1-64 characters: lowercase letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidFrame(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidFrame(f"a role is {' or '.join(ROLES)}, not {role!r}")
    return role


def check_limits(values: Mapping[str, object]) -> Limits:
    """Own limits as stored, or InvalidFrame naming the first wrong one.

    Each name is one of LIMIT_NAMES; each value None (lifted) or a finite number: a whole
    number for the counts, at least 1 for ``concurrent_replies``, at least 0 otherwise (the
    bounds of a role's limits, :class:`~liaotian.settings.Limits`).
    """
    checked: Limits = {}
    for name, value in values.items():
        if name not in LIMIT_NAMES:
            raise InvalidFrame(f"unknown limit {name!r}: the limits are {', '.join(LIMIT_NAMES)}")
        if value is None:
            checked[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFrame(f"the limit {name} is a number, or null (none) to lift it")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise InvalidFrame(f"the limit {name} is a finite number, or null (none) to lift it")
        lowest = 1 if name == "concurrent_replies" else 0
        if value < lowest:
            raise InvalidFrame(f"the limit {name} is at least {lowest}")
        if name in WHOLE_LIMITS:
            if not float(value).is_integer():
                raise InvalidFrame(f"the limit {name} is a whole number")
            checked[name] = int(value)
        else:
            checked[name] = float(value)
    return checked


@dataclass(frozen=True, slots=True)
class UserInfo:
    """An account as admins see it: ``limits`` its own ({}: all follow its role)."""

    id: int
    name: str
    role: str
    status: str
    created_at: datetime
    limits: Limits

    def to_wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "created_at": wire_time(self.created_at),
            "limits": self.limits,
        }


def _info(user: User) -> UserInfo:
    return UserInfo(
        id=user.id,
        name=user.name,
        role=user.role,
        status=user.status,
        created_at=aware(user.created_at),
        limits=dict(user.limits or {}),
    )


class Accounts:
    """Users and credentials in the database. Hashing runs off the event loop."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def _sessions(self) -> AsyncIterator[AsyncSession]:
        """A session; what the database raises in it (commit included) leaves as a
        :class:`~liaotian.errors.StoreError`."""
        try:
            async with self._sessionmaker() as session:
                yield session
        except DATABASE_ERRORS as error:
            raise domain_error(error) from error

    # -- users -----------------------------------------------------------------------------

    async def has_users(self) -> bool:
        async with self._sessions() as session:
            return bool(await session.scalar(select(func.count()).select_from(User)))

    async def add_user(
        self,
        name: str,
        password: str,
        *,
        role: str | None = None,
        status: str = ACTIVE,
        limits: Mapping[str, object] | None = None,
    ) -> str:
        """Create a user and return its role; raises InvalidFrame for a bad name, password,
        role or limits, NameTaken for a taken name. Without ``role``, the first user is an
        admin and later ones users."""
        check_user_name(name)
        if role is not None:
            check_role(role)
        own_limits = check_limits(limits or {}) or None
        password_hash = await asyncio.to_thread(_hasher.hash, check_password(password))
        try:
            async with self._sessions() as session, session.begin():
                if role is None:
                    has_users = await session.scalar(select(func.count()).select_from(User))
                    role = USER if has_users else ADMIN
                session.add(
                    User(
                        name=name,
                        password_hash=password_hash,
                        role=role,
                        status=status,
                        limits=own_limits,
                    )
                )
        except StoreConflict:
            raise NameTaken(f"the user {name} already exists") from None
        return role

    async def users(self) -> list[UserInfo]:
        """Every account, by name."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(User).order_by(User.name))).all()
        return [_info(row) for row in rows]

    async def user(self, name: str) -> UserInfo:
        """The account ``name``; NotFound without one."""
        async with self._sessions() as session:
            row = await session.scalar(select(User).where(User.name == name))
        if row is None:
            raise NotFound(f"no user {name}")
        return _info(row)

    async def update_user(
        self,
        name: str,
        *,
        role: str | None = None,
        status: str | None = None,
        limits: Mapping[str, object] | None = None,
    ) -> tuple[UserInfo, UserInfo]:
        """Change what is given (``limits`` replaces the own limits; ``{}`` clears them) in
        one transaction; returns the account before and after.

        Raises NotFound, InvalidFrame (a bad role, status or limit: nothing changes), or
        LastAdmin when it would leave accounts without an active admin.
        """
        if role is not None:
            check_role(role)
        if status is not None and status not in SETTABLE_STATUSES:
            raise InvalidFrame(f"a status is {' or '.join(SETTABLE_STATUSES)}, not {status!r}")
        own_limits = check_limits(limits) if limits is not None else None
        async with self._sessions() as session, session.begin():
            row = await session.scalar(select(User).where(User.name == name).with_for_update())
            if row is None:
                raise NotFound(f"no user {name}")
            before = _info(row)
            if (role not in (None, ADMIN)) or (status not in (None, ACTIVE)):
                await self._keep_an_admin(session, row, removing=False)
            if role is not None:
                row.role = role
            if status is not None:
                row.status = status
            if own_limits is not None:
                row.limits = own_limits or None
            after = _info(row)
        return before, after

    async def credential_ids(self, name: str) -> set[int]:
        """The ids of the user's credentials not revoked (their sockets may be open)."""
        async with self._sessions() as session:
            user_id = await self._user_id(session, name)
            ids = await session.scalars(
                select(Credential.id).where(
                    Credential.user_id == user_id, Credential.revoked_at.is_(None)
                )
            )
            return set(ids)

    async def set_password(self, name: str, password: str, *, keep: int | None = None) -> set[int]:
        """Change the password and end every session of the user but ``keep`` (tokens
        stay); returns the ids of the sessions ended."""
        password_hash = await asyncio.to_thread(_hasher.hash, check_password(password))
        async with self._sessions() as session, session.begin():
            user_id = await self._user_id(session, name)
            await session.execute(
                update(User).where(User.id == user_id).values(password_hash=password_hash)
            )
            ended = set(
                await session.scalars(
                    select(Credential.id).where(
                        Credential.user_id == user_id,
                        Credential.kind == SESSION,
                        Credential.revoked_at.is_(None),
                        Credential.id != (keep if keep is not None else -1),
                    )
                )
            )
            if ended:
                await session.execute(
                    update(Credential).where(Credential.id.in_(ended)).values(revoked_at=utcnow())
                )
        return ended

    async def owner(self, name: str) -> str:
        """The owner id of the user's conversations; NotFound without such a user."""
        async with self._sessions() as session:
            return account_owner(await self._user_id(session, name))

    async def remove_user(self, name: str) -> str:
        """Delete the user and its credentials; returns the owner id of its conversations.

        They stay in the database, unreachable: they belong to the removed user's id, which
        no later user gets, even one created with the same name.
        """
        async with self._sessions() as session, session.begin():
            row = await session.scalar(select(User).where(User.name == name).with_for_update())
            if row is None:
                raise NotFound(f"no user {name}")
            user_id = row.id
            await self._keep_an_admin(session, row, removing=True)
            await session.execute(delete(Credential).where(Credential.user_id == user_id))
            await session.execute(delete(User).where(User.id == user_id))
        return account_owner(user_id)

    async def verify_password(self, name: str, password: str) -> bool:
        """True when ``password`` is the user's and the user is active; same cost whether
        the user exists or not."""
        async with self._sessions() as session:
            stored = await session.scalar(
                select(User.password_hash).where(User.name == name, User.status == ACTIVE)
            )
        try:
            return (
                await asyncio.to_thread(_hasher.verify, stored or _DUMMY_HASH, password)
                and stored is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    async def sign_in_status(self, name: str, password: str) -> str | None:
        """The account's status when ``password`` is its password, else None; the same
        cost whether the user exists or not (a wrong password says nothing more)."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(User.password_hash, User.status).where(User.name == name)
                )
            ).first()
        stored, status = row if row is not None else (None, None)
        try:
            verified = await asyncio.to_thread(_hasher.verify, stored or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return status if verified and stored is not None else None

    # -- credentials -------------------------------------------------------------------------

    async def create_session(self, name: str, lifetime: float) -> str:
        """A new sign-in session for the user; returns its secret (the cookie value)."""
        secret = secrets.token_urlsafe(32)
        await self._add_credential(
            name, SESSION, "", secret, utcnow() + timedelta(seconds=lifetime)
        )
        return secret

    async def create_token(self, name: str, label: str = "") -> tuple[int, str]:
        """A new API token for the user; returns (id, token). The token is shown once."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        credential_id = await self._add_credential(name, TOKEN, label, secret, None)
        return credential_id, secret

    async def _add_credential(
        self, name: str, kind: str, label: str, secret: str, expires: datetime | None
    ) -> int:
        async with self._sessions() as session, session.begin():
            user_id = await self._user_id(session, name)
            row = Credential(
                user_id=user_id,
                kind=kind,
                name=label,
                secret_hash=hash_secret(secret),
                expires_at=expires,
            )
            session.add(row)
            await session.flush()
            return row.id

    async def identify(self, secret: str, kind: str) -> Identity | None:
        """The identity behind a live (not revoked, not expired) secret of ``kind``."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(User.name, User.id, Credential.id, Credential.expires_at, User.role)
                    .join(User, User.id == Credential.user_id)
                    .where(
                        Credential.secret_hash == hash_secret(secret),
                        Credential.kind == kind,
                        Credential.revoked_at.is_(None),
                        User.status == ACTIVE,
                    )
                )
            ).first()
        if row is None:
            return None
        name, user_id, credential_id, expires, role = row
        if expires is not None and aware(expires) < utcnow():
            return None
        return Identity(
            user=name, user_id=user_id, credential_id=credential_id, role=role, kind=kind
        )

    async def revoke(self, credential_id: int, *, user: str | None = None) -> None:
        """Revoke a credential (of ``user`` only, when given); NotFound otherwise."""
        async with self._sessions() as session, session.begin():
            query = update(Credential).where(
                Credential.id == credential_id, Credential.revoked_at.is_(None)
            )
            if user is not None:
                query = query.where(
                    Credential.user_id == select(User.id).where(User.name == user).scalar_subquery()
                )
            result = await session.execute(query.values(revoked_at=utcnow()))
            if not result.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"no live credential {credential_id}")

    async def revoke_token(self, token_id: int, *, user: str | None = None) -> CredentialInfo:
        """Revoke the live API token ``token_id`` (only one of ``user``, when given) and
        return it; NotFound for any other id (a session's, another user's, a revoked one)."""
        async with self._sessions() as session, session.begin():
            query = (
                select(Credential, User.name)
                .join(User, User.id == Credential.user_id)
                .where(
                    Credential.id == token_id,
                    Credential.kind == TOKEN,
                    Credential.revoked_at.is_(None),
                )
                .with_for_update(of=Credential)
            )
            if user is not None:
                query = query.where(User.name == user)
            found = (await session.execute(query)).first()
            if found is None:
                raise NotFound(f"no live token {token_id}")
            row, owner = found
            row.revoked_at = utcnow()
            return CredentialInfo(
                id=row.id,
                user=owner,
                kind=row.kind,
                name=row.name,
                created_at=aware(row.created_at),
                revoked=True,
            )

    async def list_tokens(self, name: str | None = None) -> list[CredentialInfo]:
        query = (
            select(Credential, User.name)
            .join(User, User.id == Credential.user_id)
            .where(Credential.kind == TOKEN)
            .order_by(Credential.id)
        )
        if name is not None:
            query = query.where(User.name == name)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [
            CredentialInfo(
                id=row.id,
                user=user,
                kind=row.kind,
                name=row.name,
                created_at=aware(row.created_at),
                revoked=row.revoked_at is not None,
            )
            for row, user in rows
        ]

    async def dead(self, credential_ids: Iterable[int]) -> set[int]:
        """Which of ``credential_ids`` are revoked, expired, deleted, or of a user not
        active, now."""
        wanted = set(credential_ids)
        if not wanted:
            return set()
        now = utcnow()
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(Credential.id, Credential.revoked_at, Credential.expires_at)
                    .join(User, User.id == Credential.user_id)
                    .where(Credential.id.in_(wanted), User.status == ACTIVE)
                )
            ).all()
        alive = {
            credential_id
            for credential_id, revoked, expires in rows
            if revoked is None and (expires is None or aware(expires) >= now)
        }
        return wanted - alive

    @staticmethod
    async def _keep_an_admin(session: AsyncSession, user: User, *, removing: bool) -> None:
        """LastAdmin when ``user`` is the only active admin and, after the change, an
        account would remain (removing the very last account is allowed)."""
        admins = set(
            await session.scalars(
                select(User.id).where(User.role == ADMIN, User.status == ACTIVE).with_for_update()
            )
        )
        if admins != {user.id}:
            return
        if removing and not await session.scalar(
            select(func.count()).select_from(User).where(User.id != user.id)
        ):
            return
        raise LastAdmin(
            f"{user.name} is the last active admin: make another account an admin first"
        )

    @staticmethod
    async def _user_id(session: AsyncSession, name: str) -> int:
        user_id = await session.scalar(select(User.id).where(User.name == name))
        if user_id is None:
            raise NotFound(f"no user {name}")
        return int(user_id)
