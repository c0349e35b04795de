"""The auth service's own pages: `/`, `/favicon.ico`, and API docs that need no internet."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest

ICO_MAGIC = b"\x00\x00\x01\x00"
REFERENCE = re.compile(r"""(?:src|href)="([^"]*)"|\burl:\s*'([^']*)'""")
"""Where a docs page names something to load: attributes, and Swagger UI's `url:` option."""


@pytest.fixture
def database_url(sqlite_database: str) -> str:
    """The pages touch no database: one backend is enough."""
    return sqlite_database


def references(page: str) -> list[str]:
    return [first or second for first, second in REFERENCE.findall(page)]


async def test_the_root_redirects_to_the_console(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.is_redirect
    assert response.headers["location"] == "/console/"


async def test_the_favicon_is_an_icon(client: httpx.AsyncClient) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/x-icon"
    assert response.content.startswith(ICO_MAGIC)


async def test_the_api_docs_page_names_no_outside_host(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    found = references(page)
    assert len(found) >= 3, found  # its script, the OpenAPI document and the icon at least
    outside = [url for url in found if urlsplit(url).netloc or not url.startswith("/")]
    assert outside == []
    assert not re.search(r"https?:|//[a-z0-9]", page, re.IGNORECASE)


async def test_every_asset_of_the_api_docs_page_is_served(client: httpx.AsyncClient) -> None:
    for url in references((await client.get("/docs")).text):
        response = await client.get(url)
        assert (url, response.status_code) == (url, 200)
        assert response.content, url


async def test_the_served_swagger_ui_reads_openapi_3_1(client: httpx.AsyncClient) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on."""
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    bundle = (await client.get("/docs-assets/swagger-ui-bundle.js")).text
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle)


async def test_the_swagger_ui_oauth2_redirect_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "<html" in response.text


async def test_there_is_no_redoc_page(client: httpx.AsyncClient) -> None:
    """ReDoc's bundle loads its logo from an outside host, so it is not offered."""
    assert (await client.get("/redoc")).status_code == 404
