"""Administration, admins only: provider health and the replies streaming now (docs/administration.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin")
