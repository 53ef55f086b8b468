"""Routes of the browser side: ``/`` (the page), ``/static/...`` (its files and the vendored
libraries), ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), none from a CDN.

These routes are open (``http.auth`` protects only ``/v1`` and ``/metrics``; the docs follow
``LABCRUNCH_PUBLIC_DOCS``); the page itself sends the API key the user typed on its ``/v1``
calls. None of them is part of the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
VENDOR = "/static/vendor"

# The browser may load and send nothing but to this server (plus data: and blob: URLs the pages
# make themselves): a library that reaches for a CDN (ReDoc's footer logo does) is stopped by
# the browser before any request, so the pages behave the same with and without internet.
SAME_ORIGIN_ONLY = "; ".join((
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline'",  # the docs pages start their library inline
    "style-src 'self' 'unsafe-inline'",  # Leaflet, Swagger UI and ReDoc set inline styles
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "worker-src 'self' blob:",
    "connect-src 'self'",
    "frame-ancestors 'self'",
))
HEADERS = {"Content-Security-Policy": SAME_ORIGIN_ONLY}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    # Revalidated on every load (ETag): a server upgrade shows its new page at once.
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache", **HEADERS})


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


def _same_origin(response: HTMLResponse) -> HTMLResponse:
    response.headers.update(HEADERS)
    return response


def docs_router(openapi_url: str, title: str) -> APIRouter:
    """``/docs`` and ``/redoc`` over ``openapi_url``, with every asset served from ``/static``."""
    docs = APIRouter(include_in_schema=False)

    @docs.get("/docs")
    async def swagger_ui() -> HTMLResponse:
        return _same_origin(get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} - API docs",
            swagger_js_url=f"{VENDOR}/swagger-ui-dist/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui-dist/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
            # The default validator badge asks validator.swagger.io about the document.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        ))

    @docs.get("/redoc")
    async def redoc() -> HTMLResponse:
        return _same_origin(get_redoc_html(
            openapi_url=openapi_url, title=f"{title} - API reference",
            redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url="/static/favicon.svg", with_google_fonts=False,
        ))

    return docs


def install(app: FastAPI) -> None:
    """Serve the page, its files and the API docs on ``app`` (made with ``docs_url=None,
    redoc_url=None``, so that FastAPI's CDN-based pages are not registered)."""
    app.include_router(router)
    app.include_router(docs_router(app.openapi_url or "/openapi.json", app.title))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
