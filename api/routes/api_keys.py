"""Per-customer API keys. Filled in by the API-keys work."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Admin

router = APIRouter(prefix="/v1/customers", tags=["access"], dependencies=[Admin])
