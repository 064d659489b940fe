"""Title matching forgives what people type, and refuses to guess between different films.

Guards against: case/accents/punctuation breaking a lookup, "Matrix, The" vs "The Matrix"
mismatches, a missing year failing, a typo'd sequel number silently picking the wrong film,
remakes resolved arbitrarily, and unknown titles without suggestions.
"""

from __future__ import annotations

import numpy as np
import pytest

from aerec.recommend import AmbiguousTitle, TitleIndex, UnknownMovie
from aerec.recommend.titles import display_title, split_year, title_key

TITLES = [
    ("Toy Story (1995)", 0, 500),
    ("Toy Story 2 (1999)", 0, 300),
    ("Matrix, The (1999)", 0, 800),
    ("Amélie", 2001, 200),
    ("Game, The (1997)", 0, 150),
    ("Game, The (1980)", 0, 10),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", 0, 40),
    ("Chasing Amy (1997)", 0, 90),
    ("Chasing Amy (1997)", 0, 5),  # a duplicate entry of the same film (as in MovieLens 100K)
    ("William Shakespeare's Romeo and Juliet (1996)", 0, 70),
    ("Star Trek: Generations (1994)", 0, 60),
    ("Star Trek: First Contact (1996)", 0, 80),
    ("Babe", 1995, 100),
    ("Heat & Dust", 1983, 3),
]


@pytest.fixture(scope="module")
def index() -> TitleIndex:
    titles = [t for t, _, _ in TITLES]
    years = np.array([y for _, y, _ in TITLES])
    ids = np.arange(len(TITLES)) * 10 + 1
    counts = np.array([n for _, _, n in TITLES])
    return TitleIndex(titles, years, ids, counts)


def title_of(index: TitleIndex, query: str) -> str:
    return index.titles[index.match(query)]


@pytest.mark.parametrize("query", [
    "Toy Story (1995)", "toy story", "TOY STORY", "  toy   story ", "Toy-Story!", "toy story 1995",
    "toy stroy", "Toy Sotry (1995)",
])
def test_case_punctuation_typos_and_missing_year(index, query):
    assert title_of(index, query) == "Toy Story (1995)"


@pytest.mark.parametrize("query", [
    "Matrix, The", "The Matrix", "the matrix", "matrix", "Matrix, The (1999)", "The Matrix (1999)",
    "teh matrix",
])
def test_article_order_and_year(index, query):
    assert title_of(index, query) == "Matrix, The (1999)"


def test_accents_ampersand_and_alternative_titles(index):
    assert title_of(index, "amelie") == "Amélie"
    assert title_of(index, "AMÉLIE (2001)") == "Amélie"
    assert title_of(index, "heat and dust") == "Heat & Dust"
    lost = "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert title_of(index, "the city of lost children") == lost
    assert title_of(index, "cite des enfants perdus") == lost
    assert title_of(index, "romeo and juliet") == "William Shakespeare's Romeo and Juliet (1996)"


def test_sequel_numbers_are_never_confused(index):
    assert title_of(index, "toy story 2") == "Toy Story 2 (1999)"
    with pytest.raises(UnknownMovie) as err:
        index.match("toy story 3")
    assert any(s["title"].startswith("Toy Story") for s in err.value.suggestions)


def test_remakes_are_ambiguous_until_the_year_is_given(index):
    with pytest.raises(AmbiguousTitle) as err:
        index.match("the game")
    cands = err.value.candidates
    assert [(c["title"], c["movie_id"]) for c in cands] == [
        ("Game, The (1980)", 51), ("Game, The (1997)", 41)]
    assert "1980" in str(err.value) and "id 41" in str(err.value)
    assert title_of(index, "The Game (1980)") == "Game, The (1980)"
    assert isinstance(err.value, ValueError)


def test_partial_title_listing_several_films_is_ambiguous(index):
    with pytest.raises(AmbiguousTitle) as err:
        index.match("star trek")
    assert {c["title"] for c in err.value.candidates} == {
        "Star Trek: Generations (1994)", "Star Trek: First Contact (1996)"}


def test_duplicate_entries_of_one_film_resolve_to_the_most_rated(index):
    assert index.match("chasing amy") == 7


def test_unknown_title_lists_the_closest_titles(index):
    with pytest.raises(UnknownMovie) as err:
        index.match("Toy Stories Forever")
    assert err.value.suggestions and err.value.suggestions[0]["title"].startswith("Toy Story")
    assert "did you mean" in str(err.value)
    with pytest.raises(UnknownMovie) as err:
        index.match("Toy Story (2010)")  # the title exists, not from that year
    assert err.value.suggestions[0]["title"] == "Toy Story (1995)"
    with pytest.raises(UnknownMovie):
        index.match("   ")


def test_search_prefix_first_most_rated_first_then_typos(index):
    titles = [index.titles[c] for c in index.search("toy", 5)]
    assert titles[:2] == ["Toy Story (1995)", "Toy Story 2 (1999)"]
    assert index.titles[index.search("the mat", 3)[0]] == "Matrix, The (1999)"
    assert index.titles[index.search("star t", 5)[0]] == "Star Trek: First Contact (1996)"
    assert index.titles[index.search("matirx", 3)[0]] == "Matrix, The (1999)"
    assert "Amélie" in [index.titles[c] for c in index.search("ame", 5)]
    assert index.search("", 5) == [] and len(index.search("a", 2)) <= 2


def test_key_helpers():
    assert split_year("Toy Story (1995)") == ("Toy Story", 1995)
    assert split_year("Blade Runner 2049") == ("Blade Runner 2049", None)
    assert title_key("Matrix, The") == title_key("The Matrix") == "matrix"
    assert display_title("Babe", 1995) == "Babe (1995)"
    assert display_title("Toy Story (1995)", 1995) == "Toy Story (1995)"
