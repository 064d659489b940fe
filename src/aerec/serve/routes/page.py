"""``GET /``: the web page, and its script and style sheet under ``/static``.

The page arrives with its first view already in it: the model's facts (what ``/health`` says)
and the popular movies (the answer to no ratings), so a visitor sees a list at once, before
the script has run or any request has been answered. The script then takes over (stored
ratings, filters, the stars to rate with). ``static/index.html`` holds the markers this
module fills; served as a plain file it still works, the script filling in instead.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from aerec import __version__
from aerec.recommend import Recommender
from aerec.recommend.titles import display_title
from aerec.serve.answers import JSONAnswer
from aerec.serve.schemas import DEFAULT_MAX_K

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: Movies of the first view, as many as the page asks for by default (``DEFAULT_K`` of app.js).
FIRST_VIEW_K = 10
#: The fallback's note in plain words (the API's explains its ranking formula); app.js's
#: ``POPULAR_NOTE`` says the same once the script has run.
POPULAR_NOTE = (
    "These are popular movies that most people rate highly, the same for everyone. "
    "Rate a few movies you know to get a list of your own."
)

# What index.html holds, and this module fills in.
_MODEL_MARK = '<body data-model="">'
_INFO_MARK = "<!--model-info-->"
_RECS_MARK = "<!--recommendations-->"
_NOTE_MARK = '<p id="recs-note" class="note" hidden></p>'
_ORDER_MARK = '<p id="recs-order" class="order-note" hidden></p>'


def page_model(rec: Recommender, max_k: int = DEFAULT_MAX_K) -> dict[str, Any]:
    """The facts of ``rec`` the page shows and rates with (the fields of ``GET /health`` it
    reads): ``n_movies``, ``n_users``, ``scale``, ``version``, ``limits.max_k``."""
    scale = rec.scale
    return {
        "n_movies": int(rec.n_movies),
        "n_users": int(rec.n_users),
        "scale": {"minimum": float(scale.minimum), "maximum": float(scale.maximum),
                  "step": float(scale.step)},
        "version": __version__,
        "limits": {"max_k": int(max_k)},
    }


def _number(value: float) -> str:
    """``1.0`` → ``"1"``, ``0.5`` → ``"0.5"`` (as JavaScript prints numbers)."""
    return f"{value:g}"


def describe_model(model: dict[str, Any]) -> str:
    """One line about the model, as app.js's ``describeModel`` writes it."""
    scale = model["scale"]
    step = scale["step"]
    steps = "" if step == 1 else " in half stars" if step == 0.5 else f" in steps of {step:g}"
    people = f" rated by {model['n_users']:,} people" if model.get("n_users") else ""
    return (
        f"Knows {model['n_movies']:,} movies{people} · stars from {_number(scale['minimum'])} "
        f"to {_number(scale['maximum'])}{steps} · aerec {model['version']}"
    )


def _rec_item(item: dict[str, Any], fallback: bool) -> str:
    """One ``<li>`` of the list, the markup app.js's ``renderRecommendations`` makes (less the
    stars to rate with, which need the script)."""
    title = str(item["title"])
    year = display_title(title, item.get("year"))[len(title):]  # "" when the title has it
    head = f'<span class="title">{escape(title)}</span>'
    if year:
        head += f'<span class="year">{escape(year)}</span>'
    badge = ""
    predicted = item.get("predicted_rating")
    if isinstance(predicted, (int, float)):
        value = f"{predicted:.1f}"
        tip, spoken = (("Average rating", f"{value} stars on average") if fallback
                       else ("Your predicted rating", f"predicted {value} stars"))
        badge = (f'<span class="predicted" title="{tip}" aria-label="{spoken}">'
                 f"★ {value}</span>")
    reason = f'<p class="reason">{escape(item["reason"])}</p>' if item.get("reason") else ""
    return (
        f'<li class="rec" data-movie-id="{int(item["movie_id"])}"><div class="rec-head">'
        f'<span class="rec-title">{head}</span>{badge}</div>{reason}</li>'
    )


def render_index(template: str, model: dict[str, Any], answer: dict[str, Any]) -> str:
    """``template`` (index.html) with ``model`` (:func:`page_model`) and the popular list
    ``answer`` (a ``POST /recommendations`` answer to no ratings) filled in."""
    for mark in (_MODEL_MARK, _INFO_MARK, _RECS_MARK, _NOTE_MARK, _ORDER_MARK):
        if template.count(mark) != 1:
            raise ValueError(f"index.html must hold {mark!r} once")
    fallback = bool(answer.get("fallback"))
    items = "".join(_rec_item(item, fallback) for item in answer.get("items", []))
    note = POPULAR_NOTE if fallback and answer.get("items") else answer.get("note")
    order = answer.get("order_note")
    html = (
        template
        .replace(_MODEL_MARK, f'<body data-model="{escape(json.dumps(model))}">')
        .replace(_INFO_MARK, escape(describe_model(model)))
        .replace(_RECS_MARK, items)
    )
    if note:
        html = html.replace(_NOTE_MARK, f'<p id="recs-note" class="note">{escape(note)}</p>')
    if isinstance(order, str) and order.strip():
        html = html.replace(
            _ORDER_MARK, f'<p id="recs-order" class="order-note">{escape(order.strip())}</p>'
        )
    return html


def router() -> APIRouter:
    """The page itself (left out of the OpenAPI description); it is rendered on the first
    request, from the app's recommender (``app.state``), and kept."""
    router = APIRouter(default_response_class=JSONAnswer)
    index = STATIC_DIR / "index.html"
    rendered: dict[str, bytes] = {}

    @router.get("/", include_in_schema=False)
    async def web_index(request: Request) -> HTMLResponse:
        if "page" not in rendered:
            rec: Recommender = request.app.state.recommender
            context = getattr(request.app.state, "context", None)
            max_k = context.max_k if context is not None else DEFAULT_MAX_K
            # the fallback ranks by training statistics only: no model run
            answer = rec.recommend([], k=min(FIRST_VIEW_K, max_k)).to_dict()
            html = render_index(index.read_text(encoding="utf-8"), page_model(rec, max_k),
                                answer)
            rendered["page"] = html.encode()
        return HTMLResponse(rendered["page"], media_type="text/html; charset=utf-8")

    return router


def static_files() -> StaticFiles:
    """The page's files, to mount at ``/static`` (a mount is the app's, not a router's)."""
    return StaticFiles(directory=STATIC_DIR)


__all__ = ["POPULAR_NOTE", "STATIC_DIR", "describe_model", "page_model", "render_index",
           "router", "static_files"]
