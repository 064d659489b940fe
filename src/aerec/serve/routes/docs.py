"""``GET /docs`` (Swagger UI) and ``GET /redoc``: the API description pages, each with the
content security policy its CDN scripts need."""

import base64
import hashlib
import re

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from aerec.serve.answers import JSONAnswer


def _inline_hashes(html: str, tag: str) -> list[str]:
    """CSP ``'sha256-…'`` sources of the inline ``<tag>`` elements of ``html``."""
    found = re.findall(rf"<{tag}(?:\s[^>]*)?>(.*?)</{tag}>", html, flags=re.S | re.I)
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
        for text in found if text.strip()
    ]


def _docs_page(page: HTMLResponse) -> HTMLResponse:
    """FastAPI's Swagger UI / ReDoc page with a policy of its own: the scripts and styles of
    the CDN they load from, the page's inline bootstrap script by hash, inline styles (both
    UIs insert style elements as they render; no user input reaches these pages)."""
    html = page.body.decode()
    scripts = " ".join(_inline_hashes(html, "script"))
    page.headers["content-security-policy"] = (
        f"default-src 'none'; script-src {scripts} https://cdn.jsdelivr.net; "
        "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
        "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
        "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    return page


def router() -> APIRouter:
    """The documentation pages (left out of the OpenAPI description itself)."""
    router = APIRouter(default_response_class=JSONAnswer)

    @router.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _docs_page(get_swagger_ui_html(openapi_url="/openapi.json",
                                              title="aerec - Swagger UI"))

    @router.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _docs_page(get_redoc_html(openapi_url="/openapi.json", title="aerec - ReDoc"))

    return router


__all__ = ["router"]
