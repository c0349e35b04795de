"""Every error the auth service answers, as `{"detail": …}` in one style.

A `detail` is a lower-case sentence fragment ("not found", "admins only"), whoever raised
it: FastAPI's and Starlette's own details ("Not Found", "Method Not Allowed",
"Not authenticated") are rewritten to that style here, so clients and the console show
one voice. Names keep their capitals ("LiveKit not configured"). A validation error (422)
is a list of `{"loc", "msg", "type"}`, without the refused input: it may be a password.
"""

from __future__ import annotations

from http import HTTPStatus

import sqlalchemy.exc
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shared.logging import get_logger
from shared.redis_connect import REDIS_ERRORS

log = get_logger(__name__)

STATUS_PHRASES = frozenset(code.phrase for code in HTTPStatus)
"""Starlette's default details are these title-case phrases ("Not Found")."""

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    *REDIS_ERRORS,
)
"""What a request meets when PostgreSQL or Redis is down, hung or (Redis) full: the client
should retry later. Any Redis error counts, so a full Redis (`OOM …`) fails closed too."""
RETRY_AFTER_SECONDS = 5


def error_detail(text: str) -> str:
    """`text` as a lower-case sentence fragment: "Not Found" → "not found".

    Only a leading capital of an ordinary word is lowered; a name or an acronym
    ("LiveKit", "CORS", "JSON") keeps its capitals.
    """
    if text in STATUS_PHRASES:
        return text.lower()
    first_word = text.split(" ", 1)[0]
    if first_word[:1].isupper() and first_word[1:] == first_word[1:].lower():
        return text[0].lower() + text[1:]
    return text


async def http_error(request: Request, error: Exception) -> Response:
    """FastAPI's answer to an HTTPException (its headers kept), with the detail restyled."""
    assert isinstance(error, StarletteHTTPException)
    if isinstance(error.detail, str):
        error = StarletteHTTPException(
            error.status_code, detail=error_detail(error.detail), headers=error.headers
        )
    return await http_exception_handler(request, error)


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    """422 with where and what, but never the refused value (it may be a secret)."""
    assert isinstance(error, RequestValidationError)
    problems = [
        {"loc": problem["loc"], "msg": error_detail(problem["msg"]), "type": problem["type"]}
        for problem in error.errors()
    ]
    return JSONResponse(
        {"detail": jsonable_encoder(problems)},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def dependency_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("backing_service_unavailable", path=request.url.path, error=type(error).__name__)
    return JSONResponse(
        {"detail": "service temporarily unavailable, try again later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def internal_error(request: Request, error: Exception) -> JSONResponse:
    """Log the failure server-side; the client only learns that it happened."""
    log.error("unhandled_error", path=request.url.path, exc_info=error)
    return JSONResponse(
        {"detail": "internal error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR
    )


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    for unavailable in UNAVAILABLE_ERRORS:
        app.add_exception_handler(unavailable, dependency_unavailable)
    app.add_exception_handler(Exception, internal_error)
