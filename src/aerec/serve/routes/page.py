"""``GET /``: the web page, and its script and style sheet under ``/static``."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from aerec.serve.answers import JSONAnswer

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def router() -> APIRouter:
    """The page itself (left out of the OpenAPI description)."""
    router = APIRouter(default_response_class=JSONAnswer)
    index = STATIC_DIR / "index.html"

    @router.get("/", include_in_schema=False)
    async def web_index() -> FileResponse:
        return FileResponse(index, media_type="text/html; charset=utf-8")

    return router


def static_files() -> StaticFiles:
    """The page's files, to mount at ``/static`` (a mount is the app's, not a router's)."""
    return StaticFiles(directory=STATIC_DIR)


__all__ = ["STATIC_DIR", "router", "static_files"]
