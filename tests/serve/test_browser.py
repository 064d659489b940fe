"""End to end in headless Chromium: the real server on a loopback port, the real web page.

Skipped (with the reason) only when no Chromium is installed; CI installs Debian's. Playwright's
own browser download is not used: it drives the system browser.
"""

from __future__ import annotations

import os
import shutil
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
    page.wait_for_function("document.getElementById('model-info').textContent.includes('120')")
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
    page.wait_for_function("document.querySelectorAll('#ratings-list li').length === 2")
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
    page.wait_for_function("document.getElementById('model-info').textContent.includes('0.5')")
    page.get_by_label("Search titles").fill("a")
    first = page.locator("#search-results li").first
    first.wait_for()
    buttons = first.get_by_role("button")
    labels = [buttons.nth(i).get_attribute("aria-label") for i in range(buttons.count())]
    want = [f"{v / 2:.1f} stars" for v in range(1, 11)]
    want[1] = "1.0 star"
    assert labels == want
    context.close()
