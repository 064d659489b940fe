"""How the routes answer: compact JSON (:class:`JSONAnswer`) and every error as JSON
``{"detail": message}`` with the status that fits it."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from aerec.jsonable import plain
from aerec.recommend import AmbiguousTitle, UnknownMovie, UnknownUser


class JSONAnswer(JSONResponse):
    """Compact UTF-8 JSON (orjson: 0.02 ms for an explained top-10, against 0.25 ms with the
    standard library; non-finite floats become ``null``); anything orjson does not take
    (NumPy scalars, non-string keys, objects with ``to_dict``) goes through a sanitising pass
    first. A ``JSONResponse``, so the OpenAPI schema describes each answer by its route's
    ``response_model``."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return orjson.dumps(plain(content))


def error_answer(status: int, detail: str, **extra: Any) -> JSONAnswer:
    """``{"detail": detail, **extra}`` with ``status``; ``None`` extras are left out."""
    body = {"detail": detail}
    body.update({k: plain(v) for k, v in extra.items() if v is not None})
    return JSONAnswer(body, status_code=status)


def recommender_error(exc: ValueError) -> JSONAnswer:
    """A recommender's refusal as a 4xx answer: unknown user 404; unknown movie (with
    ``suggestions``), ambiguous title (with ``candidates``), :class:`InvalidRating` and any
    other bad argument (ranking name, year range) 422."""
    if isinstance(exc, UnknownUser):
        return error_answer(404, str(exc))
    if isinstance(exc, UnknownMovie):
        return error_answer(422, str(exc), suggestions=list(exc.suggestions or []))
    if isinstance(exc, AmbiguousTitle):
        return error_answer(422, str(exc), candidates=list(exc.candidates or []))
    return error_answer(422, str(exc))


def _field_path(loc: tuple | list) -> str:
    """``("body", "ratings", 0, "rating")`` → ``ratings[0].rating``."""
    out = ""
    for part in loc:
        if part in ("body",) and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_answer(exc: RequestValidationError) -> JSONAnswer:
    """A request FastAPI refused: 400 for malformed JSON, else 422 naming each bad field
    (``ratings[0].rating: …``) with the details in ``errors``."""
    errors = list(exc.errors())
    bad_json = [e for e in errors if e.get("type") == "json_invalid"]
    if bad_json:
        ctx = bad_json[0].get("ctx") or {}
        where = bad_json[0].get("loc", ("body", "?"))
        position = where[1] if len(where) > 1 else "?"
        reason = ctx.get("error", "not valid JSON")
        return error_answer(400, f"malformed JSON body: {reason} (at character {position})")
    if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") == "missing" for e in errors):
        return error_answer(
            422, 'the request body is empty; send a JSON object such as {"ratings": '
            '[{"movie_id": 50, "rating": 5}], "k": 10}'
        )
    lines, simple = [], []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        msg = str(e.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        path = _field_path(loc)
        if loc[:1] == ("query",) or loc[:1] == ("path",):
            path = _field_path(loc[1:])
        lines.append(f"{path}: {msg}")
        simple.append({"loc": [str(p) for p in loc], "msg": msg, "type": e.get("type")})
    return error_answer(422, "; ".join(lines), errors=simple)


__all__ = ["JSONAnswer", "error_answer", "recommender_error", "validation_answer"]
