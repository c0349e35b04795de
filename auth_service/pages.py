"""The auth service's own pages: `/` (to the console), `/favicon.ico`, and the API docs.

The API docs (Swagger UI at `/docs`) load their scripts and styles from this service,
never from a CDN, so they work on an air-gapped factory network: the assets are the
Swagger UI dist files that the `fastapi-offline` package ships, served at `/docs-assets/`.
Swagger UI's online validator badge is off (it would send the spec's URL to an outside
host). There is no ReDoc page: its bundle loads its logo from an outside host.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

FAVICON = Path(__file__).parent / "static" / "favicon.ico"
FAVICON_URL = "/favicon.ico"
FAVICON_MAX_AGE_SECONDS = 86_400
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""swagger-ui-bundle.js and swagger-ui.css (Swagger UI 5), as fastapi-offline ships them."""
DOCS_ASSETS_URL = "/docs-assets"
DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def add_pages(app: FastAPI) -> None:
    """Register `/`, `/favicon.ico`, `/docs` and the docs' assets on `app`."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get(FAVICON_URL, include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(
            FAVICON,
            media_type="image/x-icon",
            headers={"Cache-Control": f"public, max-age={FAVICON_MAX_AGE_SECONDS}"},
        )

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=app.title,
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=FAVICON_URL,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
