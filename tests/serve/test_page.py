"""The web page's first view and the API reference, as the server renders them (no browser:
these run where Chromium is missing too; tests/serve/test_browser.py drives the page itself)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from aerec.recommend import Recommender
from aerec.serve.routes.docs import reference_html
from aerec.serve.routes.page import (
    POPULAR_NOTE,
    STATIC_DIR,
    describe_model,
    page_model,
    render_index,
)

TEMPLATE = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
MODEL = {"n_movies": 120, "n_users": 300, "scale": {"minimum": 1.0, "maximum": 5.0, "step": 1.0},
         "version": "x", "limits": {"max_k": 100}}


def _item(movie_id: int, title: str, year: int | None) -> dict:
    return {"movie_id": movie_id, "title": title, "year": year, "predicted_rating": 4.25,
            "reason": "Popular and well rated: 4.2★ average over 89 ratings."}


def test_the_page_arrives_with_the_popular_movies_and_the_model(client: TestClient,
                                                                 recommender: Recommender):
    html = client.get("/").text
    for item in recommender.recommend([], k=10).items:
        assert f'data-movie-id="{item.movie_id}"' in html
    assert describe_model(page_model(recommender)) in html
    assert "Knows 120 movies rated by 300 people" in html
    assert POPULAR_NOTE in html and "damped" not in html.lower()
    assert "<!--" not in html  # every marker filled
    assert client.get("/").content == client.get("/").content  # rendered once, kept


def test_a_year_in_the_title_is_not_appended_again():
    answer = {"fallback": True, "note": "x", "items": [
        _item(1, "Star Wars (1977)", 1977), _item(2, "Toy Story", 1995),
        _item(3, "Heat (1995)", 1986), _item(4, "Unknown <b>year</b>", None)]}
    html = render_index(TEMPLATE, MODEL, answer)
    assert "(1977)</span><span" not in html and "(1977) (1977)" not in html
    assert '<span class="title">Star Wars (1977)</span></span>' in html
    assert '<span class="title">Toy Story</span><span class="year"> (1995)</span>' in html
    assert '<span class="year"> (1986)</span>' in html  # another year than the title's is kept
    assert "Unknown &lt;b&gt;year&lt;/b&gt;" in html  # titles are text, not markup


def test_notes_in_plain_words_and_the_order_note_when_sent():
    answer = {"fallback": True, "note": "damped mean rating …", "items": [_item(1, "A", 1990)],
              "order_note": "Ordered by average rating."}
    html = render_index(TEMPLATE, MODEL, answer)
    assert POPULAR_NOTE in html and "damped" not in html
    assert '<p id="recs-order" class="order-note">Ordered by average rating.</p>' in html
    # no field (yet), or nothing passes the filters: no order note, the API's own note
    html = render_index(TEMPLATE, MODEL, {"fallback": False, "note": "Only 0 movie(s).",
                                          "items": []})
    assert '<p id="recs-order" class="order-note" hidden></p>' in html
    assert '<p id="recs-note" class="note">Only 0 movie(s).</p>' in html


def test_half_star_scales_are_described_in_words():
    half = {**MODEL, "scale": {"minimum": 0.5, "maximum": 5.0, "step": 0.5}}
    assert "stars from 0.5 to 5 in half stars" in describe_model(half)
    assert "stars from 1 to 5 ·" in describe_model(MODEL)


def test_the_api_reference_needs_nothing_from_elsewhere(client: TestClient):
    r = client.get("/reference")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    html = r.text
    assert "<script" not in html and " style=" not in html and "<style" not in html
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith(("/", "#")), url
    for operation in ("POST", "/recommendations", "/users/{user_id}/recommendations",
                      "/movies/{movie_id}", "/health"):
        assert operation in html
    assert 'id="schema-RecommendationRequest"' in html and "min_ratings" in html
    assert client.head("/reference").headers["content-length"] == r.headers["content-length"]


def test_the_reference_renders_any_openapi_description():
    spec = {"info": {"title": "t", "version": "1"}, "paths": {"/a/{id}": {"get": {
        "description": "Uses `id`.\n\nSecond <paragraph>.",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}}],
        "responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/B"}}}}}}}}},
        "components": {"schemas": {"B": {"type": "object", "properties": {
            "k": {"type": "integer", "minimum": 1.0, "maximum": 100.0, "default": 10}},
            "required": ["k"]}}}}
    html = reference_html(spec)
    assert "<p>Uses <code>id</code>.</p><p>Second &lt;paragraph&gt;.</p>" in html
    assert "integer or null" in html and "≥ 1" in html
    assert 'list of <a href="#schema-B">B</a>' in html and 'id="schema-B"' in html
    assert "1–100; default <code>10</code>" in html
