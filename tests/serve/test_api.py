"""The HTTP API against a real trained model: every endpoint, and every refusal as a clean 4xx.

Each 4xx test guards one way a bad request could otherwise crash the handler (500) or leak a
stack trace; the equality tests guard the server adding logic of its own on top of the
Recommender.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
from fastapi.testclient import TestClient

import aerec
from aerec.recommend import AmbiguousTitle, Recommender
from aerec.serve import create_app


def _no_trace(response) -> None:
    text = response.text
    assert "Traceback" not in text and 'File "' not in text


def _assert_error(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    for needle in needles:
        assert needle.lower() in body["detail"].lower(), body["detail"]
    _no_trace(response)
    return body


@pytest.fixture(scope="module")
def ids(recommender: Recommender) -> list[int]:
    """Raw ids of well-rated-count movies (so they appear in search and explanations)."""
    order = recommender.counts.argsort()[::-1]
    return [int(recommender.movie_ids[c]) for c in order[:6]]


def _title(recommender: Recommender, movie_id: int) -> str:
    return recommender.movie(movie_id).title


# ---------------------------------------------------------------------------- health & page


def test_health_reports_model_scale_and_limits(client: TestClient, recommender: Recommender):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"] == aerec.__version__
    assert body["model"]["n_movies"] == recommender.n_movies == 120
    assert body["model"]["n_users"] == recommender.n_users == 300
    assert body["model"]["scale"] == {"minimum": 1.0, "maximum": 5.0, "step": 1.0}
    assert body["limits"]["max_ratings"] == 1000 and body["limits"]["max_k"] == 100


def test_web_page_and_static_files_are_served(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="search-input"' in page.text and "/static/app.js" in page.text
    for external in ('src="http', 'href="http', "src='http", "href='http", "//cdn"):
        assert external not in page.text  # no CDN: the page works offline
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text


def test_openapi_schema(recommender: Recommender, client: TestClient):
    spec = create_app(recommender, max_ratings=7, max_k=33).openapi()
    paths = spec["paths"]
    for path in ("/recommendations", "/users/{user_id}/recommendations", "/movies",
                 "/movies/{movie_id}", "/health"):
        assert path in paths
    body = spec["components"]["schemas"]["RecommendationRequest"]["properties"]
    assert body["k"]["maximum"] == 33 and body["k"]["minimum"] == 1
    assert body["ratings"]["maxItems"] == 7
    assert "RatingIn" in spec["components"]["schemas"]
    post = paths["/recommendations"]["post"]
    assert {"400", "413", "415", "422"} <= set(post["responses"])
    # every answer is described by its model, not as a bare string
    for path, method, model in (("/recommendations", "post", "RecommendationsOut"),
                                ("/health", "get", "HealthOut")):
        ok = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{model}"}
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "aerec"


# ---------------------------------------------------------------------------- POST /recommendations


def test_http_top10_equals_recommender(client: TestClient, recommender: Recommender, ids):
    ratings = {ids[0]: 5, ids[1]: 4, ids[2]: 1}
    r = client.post(
        "/recommendations",
        json={"ratings": [{"movie_id": m, "rating": v} for m, v in ratings.items()], "k": 10},
    )
    assert r.status_code == 200, r.text
    got = r.json()
    want = json.loads(json.dumps(recommender.recommend(ratings, k=10).to_dict()))
    assert got == want
    assert len(got["items"]) == 10 and got["fallback"] is False
    assert not set(ratings) & {item["movie_id"] for item in got["items"]}
    assert all(item["title"] and item["reason"] for item in got["items"])


def test_titles_are_accepted_and_give_the_same_list(client: TestClient, recommender, ids):
    by_id = client.post("/recommendations", json={"ratings": [
        {"movie_id": ids[0], "rating": 5}, {"movie_id": ids[3], "rating": 2}]})
    by_title = client.post("/recommendations", json={"ratings": [
        {"title": _title(recommender, ids[0]), "rating": 5},
        {"movie_id": ids[3], "rating": 2}]})
    if by_title.status_code == 422 and "matches" in by_title.json()["detail"]:
        pytest.skip("the most rated movie's title is shared with another movie")
    assert by_id.status_code == by_title.status_code == 200
    assert by_id.json()["items"] == by_title.json()["items"]


def test_filters_and_options_pass_through(client: TestClient, recommender: Recommender, ids):
    body = {"ratings": [{"movie_id": ids[0], "rating": 5}], "k": 5, "year_min": 1995,
            "year_max": 2003, "min_ratings": 20, "ranking": "predicted", "explain": False}
    r = client.post("/recommendations", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    want = recommender.recommend({ids[0]: 5}, k=5, year_min=1995, year_max=2003,
                                 min_ratings=20, ranking="predicted", explain=False)
    assert [i["movie_id"] for i in got["items"]] == want.movie_ids
    for item in got["items"]:
        assert 1995 <= item["year"] <= 2003
        assert recommender.movie(item["movie_id"]).n_ratings >= 20
    assert got["ranking"] == "predicted"


def test_empty_ratings_give_the_documented_fallback(client: TestClient, recommender):
    r = client.post("/recommendations", json={"ratings": [], "k": 7})
    assert r.status_code == 200
    body = r.json()
    assert body["fallback"] is True and body["note"]
    assert len(body["items"]) == 7
    assert [i["movie_id"] for i in body["items"]] == recommender.recommend([], k=7).movie_ids


@pytest.mark.parametrize("rating", [0, 6, -1, 5.5, 1e300])
def test_rating_off_the_scale_is_422(client: TestClient, ids, rating):
    r = client.post("/recommendations", json={"ratings": [{"movie_id": ids[0], "rating": rating}]})
    _assert_error(r, 422, "scale")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_ratings_in_json_are_422(client: TestClient, ids, literal):
    raw = f'{{"ratings": [{{"movie_id": {ids[0]}, "rating": {literal}}}]}}'
    r = client.post("/recommendations", content=raw,
                    headers={"content-type": "application/json"})
    body = _assert_error(r, 422, "finite")
    assert "ratings[0].rating" in body["detail"]


@pytest.mark.parametrize("rating", ["five", None, True, [4]])
def test_rating_of_the_wrong_type_is_422(client: TestClient, ids, rating):
    r = client.post("/recommendations", json={"ratings": [{"movie_id": ids[0], "rating": rating}]})
    _assert_error(r, 422, "ratings[0].rating")


def test_same_movie_rated_twice_differently_is_422(client: TestClient, ids):
    r = client.post("/recommendations", json={"ratings": [
        {"movie_id": ids[0], "rating": 5}, {"movie_id": ids[0], "rating": 1}]})
    _assert_error(r, 422, "twice")


def test_unknown_movie_id_is_422(client: TestClient):
    r = client.post("/recommendations", json={"ratings": [{"movie_id": 987654, "rating": 4}]})
    _assert_error(r, 422, "987654")


def test_unknown_title_is_422_with_suggestions(client: TestClient, recommender, ids):
    # numbers in titles must agree, so "<title> 7" is no match, but the title is suggested
    title = _title(recommender, ids[0])
    r = client.post("/recommendations", json={"ratings": [{"title": f"{title} 7", "rating": 4}]})
    body = _assert_error(r, 422, "did you mean")
    assert any(s["movie_id"] == ids[0] for s in body["suggestions"]), body
    assert set(body["suggestions"][0]) >= {"movie_id", "title", "year"}


def test_ambiguous_title_is_422_with_candidates(client: TestClient, recommender: Recommender):
    counts = Counter(recommender.titles)
    shared = sorted(t for t, n in counts.items() if n > 1)
    assert shared, "the generated catalogue (seed 1) has a title shared by two movies"
    title = shared[0]
    with pytest.raises(AmbiguousTitle):
        recommender.resolve_movie(title)
    r = client.post("/recommendations", json={"ratings": [{"title": title, "rating": 4}]})
    body = _assert_error(r, 422, title)
    same = {int(recommender.movie_ids[i]) for i, t in enumerate(recommender.titles) if t == title}
    assert {c["movie_id"] for c in body["candidates"]} == same


@pytest.mark.parametrize("item", [{"rating": 4}, {"movie_id": 1, "title": "X", "rating": 4},
                                  {"movie_id": 1}, {"movie_id": 1, "rating": 4, "stars": 5},
                                  {"title": "", "rating": 4}])
def test_malformed_rating_item_is_422(client: TestClient, item):
    r = client.post("/recommendations", json={"ratings": [item]})
    _assert_error(r, 422, "ratings[0]")


@pytest.mark.parametrize("k", [0, -3, 101, 10**9, "ten", 2.5])
def test_k_out_of_range_is_422(client: TestClient, ids, k):
    r = client.post("/recommendations", json={"ratings": [{"movie_id": ids[0], "rating": 4}],
                                              "k": k})
    _assert_error(r, 422, "k")


def test_k_at_the_limits_is_accepted(client: TestClient, ids):
    for k in (1, 100):
        r = client.post("/recommendations",
                        json={"ratings": [{"movie_id": ids[0], "rating": 4}], "k": k})
        assert r.status_code == 200
        assert len(r.json()["items"]) == min(k, 119)


def test_unknown_ranking_and_bad_filters_are_422(client: TestClient, ids):
    base = {"ratings": [{"movie_id": ids[0], "rating": 4}]}
    _assert_error(client.post("/recommendations", json={**base, "ranking": "best-ever"}), 422)
    _assert_error(client.post("/recommendations", json={**base, "year_min": 2000,
                                                         "year_max": 1990}), 422, "year")
    _assert_error(client.post("/recommendations", json={**base, "min_ratings": -1}), 422)
    _assert_error(client.post("/recommendations", json={**base, "colour": "red"}), 422, "colour")


@pytest.mark.parametrize("raw", ['{"ratings": [', "{'ratings': []}", "not json", '{"ratings": []}}'])
def test_malformed_json_is_400(client: TestClient, raw):
    r = client.post("/recommendations", content=raw,
                    headers={"content-type": "application/json"})
    _assert_error(r, 400, "malformed JSON")


def test_empty_body_is_422_with_an_example(client: TestClient):
    r = client.post("/recommendations", content=b"", headers={"content-type": "application/json"})
    _assert_error(r, 422, "body is empty", '"ratings"')


@pytest.mark.parametrize("raw", ["[]", '"text"', "{}", '{"ratings": {"1": 5}}', "null"])
def test_json_of_the_wrong_shape_is_422(client: TestClient, raw):
    r = client.post("/recommendations", content=raw,
                    headers={"content-type": "application/json"})
    _assert_error(r, 422)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_wrong_content_type_is_415(client: TestClient, content_type):
    r = client.post("/recommendations", content=b'{"ratings": []}',
                    headers={"content-type": content_type})
    _assert_error(r, 415, "application/json")


def test_json_content_type_variants_are_accepted(client: TestClient):
    for ct in ("application/json; charset=utf-8", "application/vnd.aerec+json"):
        r = client.post("/recommendations", content=b'{"ratings": []}',
                        headers={"content-type": ct})
        assert r.status_code == 200, (ct, r.text)


def test_too_many_ratings_is_413(recommender: Recommender):
    ids = [int(m) for m in recommender.movie_ids[:6]]
    with TestClient(create_app(recommender, max_ratings=5)) as small:
        ok = small.post("/recommendations",
                        json={"ratings": [{"movie_id": m, "rating": 3} for m in ids[:5]]})
        assert ok.status_code == 200
        r = small.post("/recommendations",
                       json={"ratings": [{"movie_id": m, "rating": 3} for m in ids]})
        _assert_error(r, 413, "too many ratings", "limit is 5")


def test_body_over_the_byte_limit_is_413(client: TestClient, recommender: Recommender):
    pad = " " * (256 * 1024)
    r = client.post("/recommendations", content=b'{"ratings": []' + pad.encode() + b"}",
                    headers={"content-type": "application/json"})
    _assert_error(r, 413, "262,144 bytes")
    # the same without Content-Length (chunked): counted while it is read
    def chunks():
        yield b'{"ratings": ['
        for _ in range(4000):  # 4000 × 3 × 29 bytes > 256 KiB
            yield b'{"movie_id": 1, "rating": 4},' * 3
        yield b'{"movie_id": 1, "rating": 4}]}'

    r = client.post("/recommendations", content=chunks(),
                    headers={"content-type": "application/json"})
    _assert_error(r, 413, "bytes")


def test_wrong_method_and_unknown_path_are_json(client: TestClient):
    _assert_error(client.get("/recommendations"), 405)
    _assert_error(client.get("/nothing-here"), 404)


# ---------------------------------------------------------------------------- known users


def test_user_recommendations_equal_recommender(client: TestClient, recommender: Recommender):
    user = int(recommender.user_ids[3])
    r = client.get(f"/users/{user}/recommendations", params={"k": 8, "min_ratings": 5})
    assert r.status_code == 200, r.text
    got = r.json()
    want = json.loads(json.dumps(
        recommender.recommend_for_user(user, k=8, min_ratings=5).to_dict()))
    assert got == want
    assert got["user_id"] == user and len(got["items"]) == 8


def test_unknown_user_is_404(client: TestClient):
    _assert_error(client.get("/users/5/recommendations"), 404, "5")


@pytest.mark.parametrize("query", ["k=0", "k=101", "k=x", "min_ratings=-2", "explain=maybe"])
def test_user_query_validation_is_422(client: TestClient, recommender, query):
    user = int(recommender.user_ids[0])
    _assert_error(client.get(f"/users/{user}/recommendations?{query}"), 422)


def test_user_id_not_a_number_is_422(client: TestClient):
    _assert_error(client.get("/users/abc/recommendations"), 422, "user_id")


# ---------------------------------------------------------------------------- movies


def test_movie_search_finds_titles(client: TestClient, recommender: Recommender, ids):
    title = _title(recommender, ids[0])
    r = client.get("/movies", params={"q": title[:6], "limit": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == title[:6]
    assert 1 <= len(body["items"]) <= 5
    assert body["items"] == [m.to_dict() for m in recommender.search_titles(title[:6], limit=5)]
    assert set(body["items"][0]) >= {"movie_id", "title", "year", "n_ratings", "mean_rating"}
    assert client.get("/movies", params={"q": "   "}).json()["items"] == []


@pytest.mark.parametrize("query", ["", "?q=", "?q=a&limit=0", "?q=a&limit=51", "?q=a&limit=x"])
def test_movie_search_validation_is_422(client: TestClient, query):
    _assert_error(client.get(f"/movies{query}"), 422)


def test_movie_by_id(client: TestClient, recommender: Recommender, ids):
    r = client.get(f"/movies/{ids[0]}")
    assert r.status_code == 200
    assert r.json() == recommender.movie(ids[0]).to_dict()
    _assert_error(client.get("/movies/987654"), 404, "987654")
    _assert_error(client.get("/movies/abc"), 422, "movie_id")


# ---------------------------------------------------------------------------- server errors


class _Broken:
    """Wraps a real recommender; ``recommend`` fails like a bug would."""

    def __init__(self, real: Recommender) -> None:
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def recommend(self, *args, **kwargs):
        raise RuntimeError("secret internal state 0xdeadbeef")


def test_unexpected_errors_are_a_generic_500_and_logged(recommender, caplog):
    app = create_app(_Broken(recommender))
    with TestClient(app, raise_server_exceptions=False) as broken, \
            caplog.at_level(logging.ERROR, logger="aerec.serve"):
        r = broken.post("/recommendations", json={"ratings": []})
    body = _assert_error(r, 500, "internal server error")
    assert "deadbeef" not in r.text and "RuntimeError" not in r.text
    assert any("deadbeef" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)
    # the app still answers afterwards
    assert body["detail"]


def test_create_app_loads_a_run_directory(serve_run):
    with TestClient(create_app(serve_run)) as c:
        assert c.get("/health").json()["model"]["n_movies"] == 120
    with pytest.raises(ValueError):
        create_app(serve_run, max_k=0)
    with pytest.raises(ValueError):
        create_app(serve_run, model_threads=0)


def test_concurrent_requests_get_their_own_answers(live_url, recommender: Recommender):
    """Requests computed at the same time in the model thread pool do not mix state."""
    import concurrent.futures

    import httpx

    ids = [int(m) for m in recommender.movie_ids]
    inputs = [{ids[i]: 5, ids[(i * 7 + 3) % len(ids)]: 1 + i % 5} for i in range(24)]
    want = [recommender.recommend(r, k=10).to_dict() for r in inputs]

    def ask(ratings: dict) -> dict:
        body = {"ratings": [{"movie_id": m, "rating": v} for m, v in ratings.items()]}
        return httpx.post(f"{live_url}/recommendations", json=body, timeout=60).json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, inputs))
    assert got == json.loads(json.dumps(want))


def test_an_app_can_be_driven_by_several_event_loops(recommender: Recommender, ids):
    """Without ``with``, each TestClient request runs in a fresh event loop."""
    app = create_app(recommender, model_threads=1)
    for _ in range(3):
        r = TestClient(app).post("/recommendations",
                                 json={"ratings": [{"movie_id": ids[0], "rating": 5}]})
        assert r.status_code == 200


# ---------------------------------------------------------------------------- HEAD and headers


def _get_routes(recommender: Recommender) -> list[str]:
    user = int(recommender.user_ids[0])
    movie = int(recommender.movie_ids[0])
    return ["/health", "/", "/static/app.js", "/static/style.css", "/movies?q=a&limit=3",
            f"/movies/{movie}", f"/users/{user}/recommendations?k=3", "/openapi.json", "/docs",
            "/redoc", "/movies/987654"]


def test_head_is_answered_on_every_get_route(client: TestClient, recommender: Recommender):
    for path in _get_routes(recommender):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["content-length"] == got.headers["content-length"], path
    # a POST-only route still says which method it takes
    r = client.head("/recommendations")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_every_answer_carries_the_security_headers(client: TestClient, recommender, ids):
    answers = [client.get(p) for p in _get_routes(recommender)]
    answers += [client.get("/nothing"), client.get("/recommendations"),
                client.post("/recommendations", content=b"{", headers={"content-type":
                                                                       "application/json"}),
                client.post("/recommendations", json={"ratings": [{"movie_id": ids[0],
                                                                   "rating": 9}]})]
    with TestClient(create_app(_Broken(recommender)), raise_server_exceptions=False) as broken:
        answers.append(broken.post("/recommendations", json={"ratings": []}))
    assert {r.status_code for r in answers} >= {200, 400, 404, 405, 422, 500}
    for r in answers:
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, r.url
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"


def test_the_page_needs_nothing_its_policy_forbids(client: TestClient):
    """The web page's policy allows scripts, styles and data from this server only, and images
    also as ``data:``: the page must have no inline script, style or event handler, load
    nothing from elsewhere, and its script must not write style or HTML as text."""
    import re

    page = client.get("/")
    csp = page.headers["content-security-policy"]
    for directive in ("script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                      "connect-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = page.text
    for script in re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S):
        assert not script[1].strip() and 'src="/static/' in script[0]  # no inline script
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith(("/", "data:image/")), url
    script = client.get("/static/app.js").text
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function",
                      '"style"', "'style'", ".cssText", "document.write"):
        assert forbidden not in script, forbidden


def test_docs_pages_allow_their_inline_script_by_hash(client: TestClient):
    import base64
    import hashlib
    import re

    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp.split(
            "script-src", 1)[1].split(";", 1)[0]
        for inline in re.findall(r"<script>(.*?)</script>", r.text, flags=re.S):
            digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp


# ---------------------------------------------------------------------------- content type


def test_a_post_without_content_type_is_taken_as_json(client: TestClient, ids):
    """``_require_json``: an absent Content-Type means JSON (curl --data-binary, fetch with a
    string body and no headers)."""
    body = {"ratings": [{"movie_id": ids[0], "rating": 5}], "k": 4}
    typed = client.post("/recommendations", json=body)
    untyped = client.post("/recommendations", content=json.dumps(body).encode())
    assert "content-type" not in untyped.request.headers
    assert untyped.status_code == 200, untyped.text
    assert untyped.json() == typed.json()
    # and it is still checked as JSON
    bad = client.post("/recommendations", content=b"ratings=5")
    _assert_error(bad, 400, "malformed JSON")


def test_request_dependencies_do_not_use_the_thread_pool(client: TestClient, ids, monkeypatch):
    """A plain-function dependency runs in FastAPI's 40-thread pool: a thread hop per request
    and, under load, 40 threads each growing its own malloc arena (the RSS growth under
    repeated bursts). The content-type check is a coroutine."""
    import fastapi.dependencies.utils as fastapi_utils

    calls = []
    real = fastapi_utils.run_in_threadpool

    async def counting(func, *args, **kwargs):
        calls.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(fastapi_utils, "run_in_threadpool", counting)
    r = client.post("/recommendations", json={"ratings": [{"movie_id": ids[0], "rating": 5}]})
    assert r.status_code == 200
    assert calls == []


# ---------------------------------------------------------------------------- rating steps


@pytest.mark.parametrize("rating", [3.5, 4.25, 1.0001])
def test_a_rating_between_the_scale_steps_is_422(client: TestClient, ids, rating):
    """A whole-star model cannot hold 3.5: refused as the data readers refuse it, naming the
    rating and the scale (the model would otherwise take it as it is, unlike its training)."""
    r = client.post("/recommendations", json={"ratings": [
        {"movie_id": ids[1], "rating": 4}, {"movie_id": ids[0], "rating": rating}]})
    body = _assert_error(r, 422, f"rating {rating:g}", "scale 1–5 in steps of 1")
    assert body["detail"].startswith("ratings[1].rating:")
    assert f"movie_id {ids[0]}" in body["detail"]


def test_whole_star_ratings_as_floats_are_accepted(client: TestClient, ids):
    r = client.post("/recommendations", json={"ratings": [{"movie_id": ids[0], "rating": 4.0}]})
    assert r.status_code == 200


def test_half_stars_follow_the_models_scale():
    from types import SimpleNamespace

    from aerec.data.ratings import RatingScale
    from aerec.serve.routes.recommendations import _off_scale

    def ratings(*values):
        return [SimpleNamespace(rating=v, movie_id=7, title=None) for v in values]

    half = RatingScale(0.5, 5.0, 0.5)
    assert _off_scale(ratings(0.5, 3.5, 5.0), half) is None
    refusal = _off_scale(ratings(3.5, 3.25), half)
    assert refusal is not None and "ratings[1].rating: rating 3.25" in refusal
    assert "0.5–5 in steps of 0.5" in refusal
