"""Usage totals from the ledger: an account's own (/account/usage) and everybody's (/admin/usage)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
