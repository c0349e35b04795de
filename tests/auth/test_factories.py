"""`GET /factories`: every factory user, for admins, operators and viewers."""

from __future__ import annotations

import httpx
import pytest

from shared.identity import UserType
from tests.auth.conftest import Accounts


@pytest.mark.parametrize("user_type", [UserType.ADMIN, UserType.OPERATOR, UserType.VIEWER])
async def test_admins_operators_and_viewers_list_every_factory(
    client: httpx.AsyncClient, accounts: Accounts, user_type: UserType
) -> None:
    factories = {(await accounts.create(UserType.FACTORY)).username for _ in range(3)}
    await accounts.create(UserType.OPERATOR)  # not a factory
    reader = await accounts.create(user_type)

    response = await client.get("/factories", params={"limit": 200}, headers=reader.headers)

    assert response.status_code == 200
    body = response.json()
    listed = {item["username"] for item in body["items"]}
    assert factories <= listed
    assert body["total"] >= len(factories)
    assert all(set(item) == {"username", "disabled", "created_at"} for item in body["items"])


async def test_only_factories_are_listed(client: httpx.AsyncClient, accounts: Accounts) -> None:
    operator = await accounts.create(UserType.OPERATOR)
    viewer = await accounts.create(UserType.VIEWER)

    body = (await client.get("/factories", headers=viewer.headers, params={"limit": 200})).json()

    assert operator.username not in {item["username"] for item in body["items"]}
    assert viewer.username not in {item["username"] for item in body["items"]}


async def test_factories_are_listed_by_name_a_page_at_a_time(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    for name in ("press-c", "press-a", "press-b"):
        await accounts.create(UserType.FACTORY, username=f"{name}-{id(client)}")
    viewer = await accounts.create(UserType.VIEWER)

    first = (await client.get("/factories?limit=2", headers=viewer.headers)).json()
    rest = (await client.get("/factories?limit=200&offset=2", headers=viewer.headers)).json()

    names = [item["username"] for item in first["items"] + rest["items"]]
    assert len(first["items"]) == 2
    assert names == sorted(names, key=str.lower)


async def test_a_factory_may_not_list_factories(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    factory = await accounts.create(UserType.FACTORY)

    response = await client.get("/factories", headers=factory.headers)

    assert response.status_code == 403


async def test_listing_factories_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/factories")

    assert response.status_code == 401


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "limit=x"])
async def test_a_bad_page_is_422(client: httpx.AsyncClient, accounts: Accounts, query: str) -> None:
    viewer = await accounts.create(UserType.VIEWER)

    response = await client.get(f"/factories?{query}", headers=viewer.headers)

    assert response.status_code == 422
