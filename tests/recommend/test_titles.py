"""Title matching forgives what people type, and refuses to guess between different films.

Guards against: case/accents/punctuation breaking a lookup, "Matrix, The" vs "The Matrix"
mismatches, a missing year failing, a typo'd sequel number silently picking the wrong film,
remakes resolved arbitrarily, a series' name ("lord of the rings", "star wars") silently picking
one film or finding none, and unknown titles without suggestions.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

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


# ---------------------------------------------------------------------------- series of films

SERIES = [
    ("Lord of the Rings, The (1978)", 15),
    ("Lord of the Rings: The Fellowship of the Ring, The (2001)", 198),
    ("Lord of the Rings: The Two Towers, The (2002)", 188),
    ("Toy Story (1995)", 50),
    ("Toy Story 2 (1999)", 300),  # a numbered sequel more rated than the first film
    ("Matrix, The (1999)", 278),
    ("Matrix Reloaded, The (2003)", 96),
    *[(f"Space Saga: Part {n} - The Story Goes On (19{80 + n})", 100 - n) for n in range(12)],
]


@pytest.fixture(scope="module")
def series() -> TitleIndex:
    titles = [t for t, _ in SERIES]
    return TitleIndex(titles, np.zeros(len(titles)), np.arange(len(titles)) + 500,
                      np.array([n for _, n in SERIES]))


def test_a_series_name_lists_its_films_instead_of_picking_the_obscure_one(series):
    with pytest.raises(AmbiguousTitle) as err:
        series.match("lord of the rings")
    assert [c["movie_id"] for c in err.value.candidates] == [500, 501, 502]  # by year
    assert "(1978) = id 500" in str(err.value)
    # the example is the most rated film, with its year
    assert str(err.value).endswith('e.g. "Lord of the Rings: The Fellowship of the Ring, The (2001)"')
    assert title_of(series, "lord of the rings (1978)") == "Lord of the Rings, The (1978)"
    # the year the message asks for picks the series' film of that year
    assert title_of(series, "lord of the rings (2002)") == \
        "Lord of the Rings: The Two Towers, The (2002)"
    assert title_of(series, "toy story 1999") == "Toy Story 2 (1999)"
    assert title_of(series, "the two towers") == "Lord of the Rings: The Two Towers, The (2002)"


def test_exact_films_above_their_continuations_and_numbered_sequels_stay_silent(series):
    assert title_of(series, "Toy Story") == "Toy Story (1995)"
    assert title_of(series, "the matrix") == "Matrix, The (1999)"


def test_many_films_sharing_the_words_list_the_most_rated(series):
    with pytest.raises(AmbiguousTitle) as err:
        series.match("space saga")
    assert err.value.total == 12 and len(err.value.candidates) == 10
    assert "matches 12 movies; the 10 most rated" in str(err.value)
    assert {c["movie_id"] for c in err.value.candidates} == set(range(507, 517))
    assert title_of(series, "space saga (1983)") == "Space Saga: Part 3 - The Story Goes On (1983)"


ML_LATEST = Path("/work/shared/data/ml-latest-small")


@pytest.fixture(scope="module")
def ml_latest() -> TitleIndex:
    if not (ML_LATEST / "movies.csv").is_file() or not (ML_LATEST / "ratings.csv").is_file():
        pytest.skip(f"MovieLens latest-small not found at {ML_LATEST}")
    with open(ML_LATEST / "movies.csv", encoding="utf-8") as f:
        movies = list(csv.DictReader(f))
    with open(ML_LATEST / "ratings.csv", encoding="utf-8") as f:
        counts = Counter(int(r["movieId"]) for r in csv.DictReader(f))
    ids = np.array([int(m["movieId"]) for m in movies])
    return TitleIndex([m["title"] for m in movies], np.zeros(len(ids)), ids,
                      np.array([counts[i] for i in ids.tolist()]))


def _id_of(index: TitleIndex, query: str) -> int:
    return int(index.movie_ids[index.match(query)])


def test_real_titles_series_and_plain_films(ml_latest):
    with pytest.raises(AmbiguousTitle) as err:
        ml_latest.match("star wars")  # titles there read "Star Wars: Episode IV - A New Hope"
    ids = {c["movie_id"] for c in err.value.candidates}
    assert {260, 1196, 1210} <= ids and "Star Wars: Episode IV - A New Hope (1977) = id 260" in \
        str(err.value)
    with pytest.raises(AmbiguousTitle) as err:
        ml_latest.match("lord of the rings")  # not silently the 1978 film
    assert {2116, 4993, 5952, 7153} == {c["movie_id"] for c in err.value.candidates}
    assert _id_of(ml_latest, "star wars (1977)") == 260
    assert _id_of(ml_latest, "a new hope") == 260
    assert _id_of(ml_latest, "Toy Story") == 1
    assert _id_of(ml_latest, "the matrix") == 2571
    assert _id_of(ml_latest, "lord of the rings 1978") == 2116
    assert _id_of(ml_latest, "lord of the rings (2001)") == 4993
