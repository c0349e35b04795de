"""User administration: every route of SPEC §2 and every validation rule."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from shared.identity import UserType
from tests.auth.conftest import PASSWORD, Account, Accounts, unique_name

NEW_PASSWORD = "a brand new password"


async def create(client: httpx.AsyncClient, admin: Account, **fields: Any) -> httpx.Response:
    body = {"username": unique_name(), "password": NEW_PASSWORD, "type": "operator", **fields}
    return await client.post("/users", json=body, headers=admin.headers)


async def test_admin_creates_a_user(client: httpx.AsyncClient, admin: Account) -> None:
    name = unique_name("Mixed.Case_name")
    response = await create(client, admin, username=name, type="factory")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "type", "disabled", "created_at"}
    assert (body["username"], body["type"], body["disabled"]) == (name, "factory", False)


async def test_a_created_user_can_log_in(client: httpx.AsyncClient, admin: Account) -> None:
    name = unique_name()
    await create(client, admin, username=name)
    response = await client.get("/auth/token", auth=(name, NEW_PASSWORD))
    assert response.status_code == 200


async def test_password_is_stored_as_an_argon2id_hash(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    created = (await create(client, admin)).json()
    user = await accounts.get(uuid.UUID(created["id"]))
    assert user is not None
    assert user.password_hash.startswith("$argon2id$")
    assert NEW_PASSWORD not in user.password_hash


async def test_a_taken_name_is_409_regardless_of_case(
    client: httpx.AsyncClient, admin: Account
) -> None:
    name = unique_name("taken")
    await create(client, admin, username=name)
    response = await create(client, admin, username=name.upper())
    assert response.status_code == 409
    assert response.json() == {"detail": "username already taken"}


@pytest.mark.parametrize(
    "username",
    ["ab", "x" * 65, "has space", "semi;colon", "ünïcode", "slash/name", ""],
)
async def test_an_invalid_username_is_422(
    client: httpx.AsyncClient, admin: Account, username: str
) -> None:
    response = await create(client, admin, username=username)
    assert response.status_code == 422


@pytest.mark.parametrize("username", ["abc", "a" * 64, "A.b_c-9"])
async def test_username_bounds_are_accepted(
    client: httpx.AsyncClient, admin: Account, username: str
) -> None:
    response = await create(client, admin, username=f"{username[:-8]}{unique_name('')[-8:]}"[-64:])
    assert response.status_code in (201, 409)


@pytest.mark.parametrize("length", [7, 1025])
async def test_a_password_out_of_bounds_is_422(
    client: httpx.AsyncClient, admin: Account, length: int
) -> None:
    response = await create(client, admin, password="p" * length)
    assert response.status_code == 422


@pytest.mark.parametrize("length", [8, 1024])
async def test_a_password_at_the_bounds_is_accepted(
    client: httpx.AsyncClient, admin: Account, length: int
) -> None:
    response = await create(client, admin, password="p" * length)
    assert response.status_code == 201


async def test_an_unknown_type_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    response = await create(client, admin, type="superuser")
    assert response.status_code == 422


async def test_an_unknown_field_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    response = await create(client, admin, is_admin=True)
    assert response.status_code == 422


async def test_a_missing_field_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post("/users", json={"username": unique_name()}, headers=admin.headers)
    assert response.status_code == 422


async def test_malformed_json_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        "/users",
        content=b'{"username": ',
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "detail" in response.json()


async def test_list_has_items_and_total(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    await accounts.create(UserType.VIEWER)
    response = await client.get("/users", params={"limit": 200}, headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "total"}
    assert body["total"] >= 2
    assert admin.username in {item["username"] for item in body["items"]}


async def test_list_pages_with_limit_and_offset(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    for _ in range(3):
        await accounts.create()
    first = (await client.get("/users?limit=2&offset=0", headers=admin.headers)).json()
    second = (await client.get("/users?limit=2&offset=2", headers=admin.headers)).json()
    assert len(first["items"]) == 2
    assert first["total"] == second["total"]
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "limit=ten"])
async def test_list_bounds_are_422(client: httpx.AsyncClient, admin: Account, query: str) -> None:
    response = await client.get(f"/users?{query}", headers=admin.headers)
    assert response.status_code == 422


async def test_read_a_user(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get(f"/users/{admin.id}", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["username"] == admin.username


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_an_unknown_id_is_404(client: httpx.AsyncClient, admin: Account, method: str) -> None:
    response = await client.request(
        method,
        "/users/00000000-0000-4000-8000-000000000000",
        headers=admin.headers,
        json={"disabled": True} if method == "PATCH" else None,
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "user not found"}


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_a_malformed_id_is_422(
    client: httpx.AsyncClient, admin: Account, method: str
) -> None:
    response = await client.request(method, "/users/not-a-uuid", headers=admin.headers, json={})
    assert response.status_code == 422


async def test_patch_changes_type_and_disabled(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    user = await accounts.create(UserType.VIEWER)
    response = await client.patch(
        f"/users/{user.id}", json={"type": "operator", "disabled": True}, headers=admin.headers
    )
    assert response.status_code == 200
    assert (response.json()["type"], response.json()["disabled"]) == ("operator", True)


async def test_patch_changes_the_password(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    user = await accounts.create()
    await client.patch(f"/users/{user.id}", json={"password": NEW_PASSWORD}, headers=admin.headers)
    assert (await client.get("/auth/token", auth=(user.username, PASSWORD))).status_code == 401
    assert (await client.get("/auth/token", auth=(user.username, NEW_PASSWORD))).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": "renamed"}, id="username"),
        pytest.param({"id": "00000000-0000-4000-8000-000000000000"}, id="id"),
        pytest.param({"type": None}, id="null-type"),
        pytest.param({"password": "short"}, id="short-password"),
        pytest.param({"disabled": "maybe"}, id="bad-bool"),
    ],
)
async def test_patch_refuses_anything_else(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts, body: dict[str, Any]
) -> None:
    user = await accounts.create()
    response = await client.patch(f"/users/{user.id}", json=body, headers=admin.headers)
    assert response.status_code == 422


async def test_delete_removes_the_user(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    user = await accounts.create()
    response = await client.delete(f"/users/{user.id}", headers=admin.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/users/{user.id}", headers=admin.headers)).status_code == 404


@pytest.mark.parametrize("user_type", [UserType.OPERATOR, UserType.VIEWER, UserType.FACTORY])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/users"),
        ("GET", "/users"),
        ("GET", "/users/{id}"),
        ("PATCH", "/users/{id}"),
        ("DELETE", "/users/{id}"),
    ],
)
async def test_non_admins_get_403(
    client: httpx.AsyncClient, accounts: Accounts, user_type: UserType, method: str, path: str
) -> None:
    user = await accounts.create(user_type)
    response = await client.request(
        method, path.format(id=user.id), headers=user.headers, json={"disabled": True}
    )
    assert response.status_code == 403
    assert response.json() == {"detail": "admins only"}


async def test_anonymous_gets_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/users")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
