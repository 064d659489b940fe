"""The API description pages.

* ``GET /reference``: the API reference as plain HTML, rendered here from the app's OpenAPI
  description: no script, nothing loaded from elsewhere, so it works with no internet (the web
  page links here);
* ``GET /docs`` (Swagger UI) and ``GET /redoc``: FastAPI's interactive pages, which load their
  scripts from a CDN (no installed package ships them), each with the content security policy
  those scripts need.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html import escape
from typing import Any

from fastapi import APIRouter, Request
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


_CODE = re.compile(r"`([^`]+)`")
_HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _text(markdown: str | None) -> str:
    """The little Markdown FastAPI descriptions use (paragraphs, `code`) as HTML."""
    paragraphs = [p.strip() for p in (markdown or "").split("\n\n") if p.strip()]
    return "".join(
        "<p>" + _CODE.sub(r"<code>\1</code>", escape(" ".join(p.split()))) + "</p>"
        for p in paragraphs
    )


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in words, with links to named schemas: ``integer or null``,
    ``list of RatingIn``."""
    if "$ref" in schema:
        name = escape(_ref_name(schema["$ref"]))
        return f'<a href="#schema-{name}">{name}</a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_type(s) for s in schema[key])
    kind = schema.get("type")
    if kind == "array":
        return "list of " + _type(schema.get("items", {}))
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"])
    if kind == "object" and "additionalProperties" in schema:
        return "object"
    return escape(str(kind or "any"))


def _limits(schema: dict[str, Any]) -> str:
    """A schema's constraints and default in words (``1–100``, ``default 10``)."""
    merged = dict(schema)
    for alternative in schema.get("anyOf", ()):
        merged = {**alternative, **merged}
    words = []
    low, high = merged.get("minimum"), merged.get("maximum")
    if low is not None and high is not None:
        words.append(f"{low:g}–{high:g}")
    elif low is not None:
        words.append(f"≥ {low:g}")
    elif high is not None:
        words.append(f"≤ {high:g}")
    if merged.get("maxItems") is not None:
        words.append(f"at most {merged['maxItems']:,} items")
    if merged.get("maxLength") is not None:
        words.append(f"at most {merged['maxLength']:,} characters")
    if "default" in schema and schema["default"] is not None:
        words.append(f"default <code>{escape(json.dumps(schema['default']))}</code>")
    return "; ".join(words)


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """An HTML table of already-escaped cells."""
    if not rows:
        return ""
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    heads = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (f'<div class="table-wrap"><table><thead><tr>{heads}</tr></thead>'
            f"<tbody>{cells}</tbody></table></div>")


def _fields(schema: dict[str, Any]) -> str:
    """The table of an object schema's fields."""
    required = set(schema.get("required", ()))
    rows = [
        (f"<code>{escape(name)}</code>", _type(field), "yes" if name in required else "",
         _limits(field), _text(field.get("description")))
        for name, field in schema.get("properties", {}).items()
    ]
    return _table(("field", "type", "required", "limits", "what"), rows)


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    anchor = escape(f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""))
    parts = [
        f'<h3 id="{anchor}"><span class="method">{escape(method.upper())}</span>'
        f'<span class="path">{escape(path)}</span></h3>',
        # FastAPI's summary is the function's name ("Get Health"): the description says more
        _text(op.get("description") or op.get("summary")),
    ]
    params = [
        (f"<code>{escape(p['name'])}</code>", escape(p.get("in", "")),
         _type(p.get("schema", {})), "yes" if p.get("required") else "",
         _limits(p.get("schema", {})), _text(p.get("description")))
        for p in op.get("parameters", [])
    ]
    if params:
        parts += ["<h4>Parameters</h4>",
                  _table(("name", "in", "type", "required", "limits", "what"), params)]
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        parts.append(f"<h4>Body (<code>{escape(media)}</code>): "
                     f"{_type(content.get('schema', {}))}</h4>")
    answers = []
    for code, answer in op.get("responses", {}).items():
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        answers.append((escape(str(code)), _type(schema) if schema else "",
                        _text(answer.get("description"))))
    if answers:
        parts += ["<h4>Answers</h4>", _table(("status", "body", "when"), answers)]
    return "".join(parts)


def reference_html(spec: dict[str, Any]) -> str:
    """The API reference page of the OpenAPI description ``spec``: every operation (its
    parameters, body and answers) and every named schema (its fields), as plain HTML with no
    script; its only outside file is this server's style sheet."""
    info = spec.get("info", {})
    title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
    operations = [
        (method, path, op)
        for path, item in spec.get("paths", {}).items()
        for method, op in item.items() if method in _HTTP_METHODS
    ]
    schemas = spec.get("components", {}).get("schemas", {})
    index = "".join(
        f'<li><a href="#{escape(f"{m}-{p}".replace("/", "-").replace("{", "").replace("}", ""))}">'
        f"{escape(m.upper())} {escape(p)}</a></li>"
        for m, p, _ in operations
    )
    body = [
        f"<h1>{escape(title)} — API reference</h1>",
        _text(info.get("summary")), _text(info.get("description")),
        '<p>The same description as JSON: <a href="/openapi.json">/openapi.json</a>. An '
        'interactive version, which loads Swagger UI from the internet, is at '
        '<a href="/docs">/docs</a>. <a href="/">Back to the web page</a>.</p>',
        f"<h2>Endpoints</h2><ul>{index}</ul>",
        *(_operation(m, p, op) for m, p, op in operations),
        "<h2>Data shapes</h2>",
    ]
    for name, schema in schemas.items():
        body.append(f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>')
        body.append(_text(schema.get("description")))
        if schema.get("properties"):
            body.append(_fields(schema))
        elif schema.get("type") or schema.get("anyOf"):
            body.append(f"<p>{_type(schema)}</p>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} — API reference</title>"
        '<link rel="stylesheet" href="/static/style.css"></head>'
        f'<body><main class="reference">{"".join(body)}</main></body></html>'
    )


def router() -> APIRouter:
    """The documentation pages (left out of the OpenAPI description itself)."""
    router = APIRouter(default_response_class=JSONAnswer)
    rendered: dict[str, bytes] = {}

    @router.get("/reference", include_in_schema=False)
    async def reference(request: Request) -> HTMLResponse:
        if "page" not in rendered:  # the description is fixed once the app is built
            rendered["page"] = reference_html(request.app.openapi()).encode()
        return HTMLResponse(rendered["page"], media_type="text/html; charset=utf-8")

    @router.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _docs_page(get_swagger_ui_html(openapi_url="/openapi.json",
                                              title="aerec - Swagger UI"))

    @router.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _docs_page(get_redoc_html(openapi_url="/openapi.json", title="aerec - ReDoc"))

    return router


__all__ = ["reference_html", "router"]
