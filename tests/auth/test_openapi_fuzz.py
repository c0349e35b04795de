"""A schemathesis pass over the OpenAPI document, as an admin: no request gets a 500."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from auth_service.core.db import create_engine, session_factory
from auth_service.core.signing import token_issuer
from auth_service.main import create_app
from auth_service.models import User
from shared.identity import UserType, username_key
from tests.auth.conftest import make_settings


async def insert_admin(url: str, password_hash: str) -> User:
    name = f"fuzz-admin-{uuid.uuid4().hex[:8]}"
    admin = User(
        username=name,
        username_key=username_key(name),
        password_hash=password_hash,
        type=UserType.ADMIN,
    )
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            session.add(admin)
            await session.commit()
    finally:
        await engine.dispose()
    return admin


@pytest.fixture(scope="module")
def admin_headers(sqlite_database: str, password_hash: str) -> dict[str, str]:
    admin = asyncio.run(insert_admin(sqlite_database, password_hash))
    token, _ = token_issuer(make_settings(sqlite_database)).issue(
        user_id=str(admin.id), username=admin.username, user_type=admin.type
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api_schema(sqlite_database: str) -> Any:
    app = create_app(make_settings(sqlite_database))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_request_gets_a_server_error(api_schema: Any, admin_headers: dict[str, str]) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            case.call_and_validate(headers=admin_headers, checks=[not_a_server_error])

        call()
