"""Administration, admins only: accounts, tokens, audit log (docs/administration.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin")
