"""The signed-in account's own: usage and remaining quota, API tokens, password (docs/administration.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/account")
