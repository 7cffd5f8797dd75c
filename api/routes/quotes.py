"""Quotes and orders. Filled in below."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Admin

router = APIRouter(prefix="/v1", tags=["pricing"], dependencies=[Admin])
