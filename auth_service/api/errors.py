"""Validation errors without the submitted values: a 422 never echoes a password back."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

ECHOING_FIELDS = ("input", "ctx")
"""What pydantic puts in an error that may repeat the request: the value itself, and the
context of a failed check (which can quote it)."""


def without_input(error: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in error.items() if key not in ECHOING_FIELDS}


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 `{"detail": [...]}`, each error without its `input` and `ctx`."""
    assert isinstance(error, RequestValidationError)
    detail = [without_input(item) for item in error.errors()]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)
