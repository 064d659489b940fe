"""End to end in headless Chromium: the real server on a loopback port, the real web page, at a
desktop width (1280 px) and a phone's (390 px).

Skipped (with the reason) only when no Chromium is installed; CI installs Debian's. Playwright's
own browser download is not used: it drives the system browser.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from aerec.recommend import Recommender

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _chromium() -> str | None:
    for candidate in (os.environ.get("AEREC_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium installed (/usr/bin/chromium); `apt-get install chromium`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _top_ids(recommender: Recommender, n: int) -> list[int]:
    order = recommender.counts.argsort()[::-1]
    return [int(recommender.movie_ids[c]) for c in order[:n]]


def _rate_from_search(page, query: str, movie_id: int, stars: int) -> None:
    search = page.get_by_label("Search titles")
    search.fill(query)
    item = page.locator(f'#search-results li[data-movie-id="{movie_id}"]')
    item.wait_for()
    label = f"{stars} star" if stars == 1 else f"{stars} stars"
    item.get_by_role("button", name=label, exact=True).click()
    page.locator(f'#ratings-list li[data-movie-id="{movie_id}"]').wait_for()


def _rec_texts(page) -> list[str]:
    return page.locator("#recs-list li .title").all_inner_texts()


def test_rate_movies_and_watch_the_top10_update(browser, live_url, recommender, tmp_path):
    first, second, third = _top_ids(recommender, 3)
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error"
            and "status of 422" not in m.text else None)  # the 422 below is provoked
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.goto(live_url + "/")

    # the model's scale and size come from /health; with no ratings: the popular fallback
    page.wait_for_function(
        "() => document.getElementById('model-info').textContent.includes('120')")
    page.locator("#recs-list li").first.wait_for()
    assert page.locator("#recs-note").is_visible()
    assert page.locator("#ratings-empty").is_visible()

    # search by title (incremental) and rate two movies
    _rate_from_search(page, recommender.movie(first).title, first, 5)
    _rate_from_search(page, recommender.movie(second).title[:5], second, 4)
    assert page.locator("#ratings-list li").count() == 2
    assert not page.locator("#ratings-empty").is_visible()

    want = recommender.recommend({first: 5, second: 4}, k=10)
    want_titles = [item.title for item in want.items]
    page.wait_for_function(
        "want => [...document.querySelectorAll('#recs-list li .title')]"
        ".map(e => e.textContent).join('|') === want",
        arg="|".join(want_titles),
    )
    items = page.locator("#recs-list li")
    assert items.count() == 10
    for i in range(10):
        li = items.nth(i)
        assert li.locator(".title").inner_text().strip()
        assert li.locator(".reason").inner_text().strip()
        assert "★" in li.locator(".predicted").inner_text()
    assert not page.locator("#recs-note").is_visible()  # personal, not the fallback
    rated_ids = {str(first), str(second)}
    shown_ids = {items.nth(i).get_attribute("data-movie-id") for i in range(10)}
    assert not rated_ids & shown_ids
    page.screenshot(path=str(tmp_path / "top10.png"), full_page=True)

    # one more rating (from the list itself: "Seen it?") changes the list
    before = _rec_texts(page)
    top = items.first
    top_id = int(top.get_attribute("data-movie-id"))
    top.get_by_role("button", name="1 star", exact=True).click()
    page.locator(f'#ratings-list li[data-movie-id="{top_id}"]').wait_for()
    page.wait_for_function(
        "before => [...document.querySelectorAll('#recs-list li .title')]"
        ".map(e => e.textContent).join('|') !== before",
        arg="|".join(before),
    )
    after = recommender.recommend({first: 5, second: 4, top_id: 1}, k=10)
    page.wait_for_function(
        "want => [...document.querySelectorAll('#recs-list li .title')]"
        ".map(e => e.textContent).join('|') === want",
        arg="|".join(item.title for item in after.items),
    )

    # ratings are removable, and change a rating in place
    page.get_by_role(
        "button", name=f"Remove your rating of {recommender.movie(top_id).title}"
    ).click()
    page.wait_for_function("() => document.querySelectorAll('#ratings-list li').length === 2")
    assert page.locator(f'#ratings-list li[data-movie-id="{top_id}"]').count() == 0

    # ratings survive a reload (localStorage)
    page.reload()
    page.locator('#ratings-list li').nth(1).wait_for()
    assert page.locator("#ratings-list li").count() == 2

    # an error from the API is shown inline, not swallowed
    page.route("**/recommendations", lambda route: route.fulfill(
        status=422, content_type="application/json",
        body='{"detail": "rating 9 for X is outside this model\'s scale 1–5"}'))
    _rate_from_search(page, recommender.movie(third).title, third, 3)
    error = page.locator("#recs-error")
    error.wait_for(state="visible")
    assert "outside this model's scale" in error.inner_text()
    page.unroute("**/recommendations")

    page.screenshot(path=str(tmp_path / "final.png"), full_page=True)
    context.close()
    assert not console_errors, console_errors


def test_half_star_scale_offers_half_stars(browser, live_url):
    """A model on a 0.5–5 scale gets half-star buttons (the page reads the scale from /health)."""
    context = browser.new_context()
    page = context.new_page()
    page.route("**/health", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body='{"status":"ok","version":"x","model":{"n_movies":120,"n_users":300,'
             '"scale":{"minimum":0.5,"maximum":5.0,"step":0.5}},"limits":{}}'))
    page.goto(live_url + "/")
    page.wait_for_function(
        "() => document.getElementById('model-info').textContent.includes('0.5')")
    page.get_by_label("Search titles").fill("a")
    first = page.locator("#search-results li").first
    first.wait_for()
    buttons = first.get_by_role("button")
    labels = [buttons.nth(i).get_attribute("aria-label") for i in range(buttons.count())]
    want = [f"{v / 2:.1f} stars" for v in range(1, 11)]
    want[1] = "1.0 star"
    assert labels == want
    context.close()


# ---------------------------------------------------------------------------- issue 14, item 9

WIDTHS = (1280, 390)

#: Text elements under a selector narrower than their own text or 8 characters, whichever is
#: less (text squeezed to a few letters a line), as "tag.class: width < needed".
SQUEEZED_TEXT_JS = """
(selector) => {
  const ctx = document.createElement("canvas").getContext("2d");
  const squeezed = [];
  for (const el of document.querySelectorAll(selector + " *")) {
    const own = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.textContent).join("").trim();
    const rect = el.getBoundingClientRect();
    if (!own || rect.width <= 1) continue;  // no text of its own, not shown, visually hidden
    const style = getComputedStyle(el);
    ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const needed = Math.min(ctx.measureText(own).width, ctx.measureText("abcdefgh").width);
    if (rect.width + 1 < needed) {
      squeezed.push(`${el.tagName.toLowerCase()}.${el.className}: ${Math.round(rect.width)}px` +
                    ` < ${Math.round(needed)}px for ${JSON.stringify(own.slice(0, 30))}`);
    }
  }
  return squeezed;
}
"""

#: How many lines an element's text takes.
LINES_JS = """
(selector) => {
  const el = document.querySelector(selector);
  return el.getBoundingClientRect().height / parseFloat(getComputedStyle(el).lineHeight);
}
"""

#: Years shown twice in a row, "(1977) (1977)", in the page's text and accessible names.
REPEATED_YEAR = re.compile(r"\((\d{4})\)\s*\(\1\)")


def _expect(locator):
    """Playwright's waiting assertions. (``wait_for_function`` given a plain expression, not an
    arrow function, ``eval``s it in the page when it has to poll, which the page's policy
    refuses: no ``unsafe-eval``.)"""
    from playwright.sync_api import expect

    return expect(locator)


def _open(browser, url: str, width: int, **options):
    """A fresh context and page ``width`` px wide, with the console errors it logs."""
    context = browser.new_context(viewport={"width": width, "height": 900}, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    return context, page, errors


def _no_overflow(page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= inner, f"the page is {width}px wide in a {inner}px window"


def _recs_posted(page) -> list[dict]:
    """The bodies of the page's ``POST /recommendations``, as they go out."""
    bodies: list[dict] = []
    page.on("request", lambda r: bodies.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/recommendations") else None)
    return bodies


@pytest.mark.parametrize("width", WIDTHS)
def test_popular_movies_are_in_the_page_before_any_script_runs(browser, live_url, recommender,
                                                                width):
    """The first view needs no script and no request: the server renders the popular movies
    and the model's facts into the page (a screenshot at load showed "Connecting…")."""
    popular = [item.title for item in recommender.recommend([], k=10).items]
    context, page, _ = _open(browser, live_url, width, java_script_enabled=False)
    assert page.locator("#recs-list li .title").all_inner_texts() == popular
    assert page.locator("#recs-note").is_visible()
    assert "120" in page.locator("#model-info").inner_text()
    assert "Connecting" not in page.locator("body").inner_text()
    context.close()

    # with the script: the same list, taken over without anyone doing anything
    context, page, errors = _open(browser, live_url, width)
    page.wait_for_load_state("networkidle")
    assert page.locator("#recs-list li .title").all_inner_texts() == popular
    assert page.locator("#recs-list li").first.get_by_role("button", name="5 stars").count()
    assert page.locator("#recs-heading").inner_text() == "Popular movies"
    body = page.locator("body").inner_text()
    assert "Connecting" not in body and "damped" not in body.lower()
    _no_overflow(page)
    context.close()
    assert not errors, errors


@pytest.mark.parametrize("width", WIDTHS)
def test_no_text_is_squeezed_and_nothing_overflows(browser, live_url, recommender, width,
                                                   tmp_path):
    """At 390 px "Your ratings" showed titles three letters a line: the stars and the Remove
    button took the row. Text now keeps its width and the controls wrap below it."""
    context, page, errors = _open(browser, live_url, width)
    for movie_id, stars in zip(_top_ids(recommender, 3), (5, 4, 2), strict=True):
        _rate_from_search(page, recommender.movie(movie_id).title, movie_id, stars)
    page.get_by_label("Search titles").fill("")
    page.wait_for_load_state("networkidle")
    assert page.locator("#ratings-list li").count() == 3
    assert page.evaluate(LINES_JS, "#ratings-heading") < 1.5, "'Your ratings' is on two lines"
    for panel in ("#rate-panel", "#recs-panel"):
        assert page.evaluate(SQUEEZED_TEXT_JS, panel) == []
    _no_overflow(page)
    page.screenshot(path=str(tmp_path / f"rated-{width}.png"), full_page=True)
    context.close()
    assert not errors, errors


def _titles_with_their_year(route) -> None:
    """The API's answer with the year in every title, as MovieLens writes titles."""
    response = route.fetch()
    body = response.json()
    for item in body.get("items", []):
        if item.get("year"):
            item["title"] = f"{item['title']} ({item['year']})"
    route.fulfill(response=response, json=body)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_year_already_in_the_title_is_not_shown_twice(browser, live_url, width):
    """"Star Wars (1977) (1977)": titles that carry their year get none appended, in the
    search results, the ratings, the list and the buttons' accessible names alike."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.route("**/recommendations", _titles_with_their_year)
    context.route(re.compile(r".*/movies\?.*"), _titles_with_their_year)
    page = context.new_page()
    page.goto(live_url + "/")
    page.get_by_label("Search titles").fill("the")
    first = page.locator("#search-results li").first
    first.wait_for()
    title = first.locator(".title").inner_text()
    assert re.search(r"\(\d{4}\)$", title), title  # the routed answer carries the year
    first.get_by_role("button", name="4 stars", exact=True).click()
    page.locator("#ratings-list li").first.wait_for()
    _expect(page.locator("#recs-heading")).to_have_text(re.compile(r"^Top "))
    page.wait_for_load_state("networkidle")
    assert re.search(r"\(\d{4}\)$", page.locator("#recs-list li .title").first.inner_text())
    text = page.locator("body").inner_text()
    names = page.evaluate("[...document.querySelectorAll('[aria-label],[title]')]"
                          ".map(e => (e.getAttribute('aria-label') || '') + ' ' +"
                          " (e.getAttribute('title') || ''))")
    for shown in (text, *names):
        assert not REPEATED_YEAR.search(shown), REPEATED_YEAR.search(shown).group(0)
    context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_api_documentation_link_works_offline(browser, live_url, width):
    """The page's documentation link leads to a page this server renders whole: nothing is
    fetched from elsewhere (Swagger UI's CDN left /docs blank offline)."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    elsewhere: list[str] = []

    def offline(route) -> None:
        if route.request.url.startswith(live_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", offline)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(live_url + "/")
    with page.expect_navigation() as navigation:
        page.get_by_role("link", name="API documentation").click()
    assert navigation.value.status == 200
    page.wait_for_load_state("networkidle")
    assert "API reference" in page.locator("h1").inner_text()
    for operation in ("POST /recommendations", "GET /movies", "GET /health"):
        assert page.get_by_role("link", name=operation, exact=True).count() == 1, operation
    assert page.locator("#schema-RecommendationRequest").is_visible()
    # styled by this server's style sheet, which the page's policy admits
    assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") == "960px"
    _no_overflow(page)
    assert page.request.get(live_url + "/openapi.json").status == 200
    assert not elsewhere, elsewhere
    assert not errors, errors
    context.close()


def _wait_until_sent(page, sent: list[dict], want: dict, seconds: float = 10) -> None:
    """Until the page has posted ``want`` (the filters wait a moment for more typing)."""
    deadline = time.monotonic() + seconds
    while not (sent and sent[-1] == want):
        assert time.monotonic() < deadline, f"sent {sent[-1:]}, not {want}"
        page.wait_for_timeout(50)


def test_filters_and_k_change_the_request_and_the_list(browser, live_url, recommender):
    """How many, released from/until and rated by at least: sent as ``k``, ``year_min``,
    ``year_max`` and ``min_ratings``, and the list follows them."""
    context, page, errors = _open(browser, live_url, 1280)
    sent = _recs_posted(page)
    first = _top_ids(recommender, 1)[0]
    _rate_from_search(page, recommender.movie(first).title, first, 5)
    _expect(page.locator("#recs-heading")).to_have_text("Top 10 for you")
    assert sent[-1] == {"ratings": [{"movie_id": first, "rating": 5}], "k": 10}

    page.get_by_label("How many").fill("4")
    _expect(page.locator("#recs-list li")).to_have_count(4)
    assert sent[-1]["k"] == 4 and page.locator("#recs-heading").inner_text() == "Top 4 for you"

    years = sorted(y for y in (recommender.movie(int(m)).year for m in recommender.movie_ids) if y)
    low, high = years[len(years) // 4], years[3 * len(years) // 4]
    page.get_by_label("Released from").fill(str(low))
    page.get_by_label("Released until").fill(str(high))
    page.get_by_label("Rated by at least").fill("60")
    want = {"ratings": [{"movie_id": first, "rating": 5}], "k": 4, "year_min": low,
            "year_max": high, "min_ratings": 60}
    _wait_until_sent(page, sent, want)
    page.wait_for_load_state("networkidle")
    shown = [int(i) for i in
             page.locator("#recs-list li").evaluate_all("l => l.map(e => e.dataset.movieId)")]
    assert shown == recommender.recommend({first: 5}, k=4, year_min=low, year_max=high,
                                          min_ratings=60).movie_ids
    for movie_id in shown:
        movie = recommender.movie(movie_id)
        assert low <= movie.year <= high and movie.n_ratings >= 60

    # a filter that cannot hold is said at once, and nothing is sent
    before = len(sent)
    page.get_by_label("Released from").fill(str(high + 1))
    error = page.locator("#filters-error")
    error.wait_for(state="visible")
    assert "after" in error.inner_text()
    page.get_by_label("How many").fill("1000")
    _expect(error).to_contain_text("How many")
    assert len(sent) == before

    # the filters survive a reload, as the ratings do
    page.get_by_label("How many").fill("3")
    page.get_by_label("Released from").fill("")
    _expect(page.locator("#recs-list li")).to_have_count(3)
    page.reload()
    page.wait_for_load_state("networkidle")
    assert page.get_by_label("How many").input_value() == "3"
    assert page.locator("#recs-list li").count() == 3
    context.close()
    assert not errors, errors


def test_the_order_note_is_shown_under_the_list_when_the_api_sends_one(browser, live_url):
    """``order_note``: one plain sentence on why the list is in this order, shown under it;
    without the field the page is as before."""
    note = "Ordered by how much we think you will like each movie."
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(live_url + "/")
    page.wait_for_load_state("networkidle")
    order = page.locator("#recs-order")
    has_field = "order_note" in page.request.post(
        live_url + "/recommendations", data={"ratings": []}).json()
    assert order.is_visible() == has_field  # the real answer, with the field or not (yet)

    def with_note(route) -> None:
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "order_note": note})

    page.route("**/recommendations", with_note)
    page.get_by_label("How many").fill("5")
    _expect(page.locator("#recs-list li")).to_have_count(5)
    order.wait_for(state="visible")
    assert order.inner_text() == note
    below = page.evaluate("[...document.querySelectorAll('#recs-panel > *')].map(e => e.id)")
    assert below.index("recs-order") > below.index("recs-list")
    _no_overflow(page)

    def without_note(route) -> None:
        response = route.fetch()
        body = response.json()
        body.pop("order_note", None)
        route.fulfill(response=response, json=body)

    page.unroute("**/recommendations")
    page.route("**/recommendations", without_note)
    page.get_by_label("How many").fill("6")
    _expect(page.locator("#recs-list li")).to_have_count(6)
    assert not order.is_visible()
    context.close()
