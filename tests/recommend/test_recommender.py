"""The Recommender API on a planted two-group dataset with a tiny trained model.

Guards against: recommending what the user already rated, filters that do not filter, crashes
(instead of the documented fallback) for an empty profile, silent acceptance of bad ratings or
unknown movies, a known user's list differing from folding in their stored ratings, evidence
naming users who never rated the movie, attributions that do not match re-scoring, and a model
that needs anything besides its checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from aerec.recommend import (
    AmbiguousTitle,
    InvalidRating,
    Recommender,
    UnknownMovie,
    UnknownUser,
)
from aerec.recommend.explain import leave_one_out, score_user

from .conftest import HALF, N_MOVIES, TEST_ONLY_USER, USER_BASE, movie_id

A_FAN = {"toy story": 5, "The Matrix": 5, "amelie": 4, movie_id(5): 5, "Beta Movie 30": 1}


def col_of(rec: Recommender, raw: int) -> int:
    return int(np.flatnonzero(rec.movie_ids == raw)[0])


def test_planted_taste_new_user_gets_their_groups_movies(recommender):
    result = recommender.recommend(A_FAN, k=10)
    cols = [col_of(recommender, m) for m in result.movie_ids]
    assert len(cols) == 10
    assert sum(c < HALF for c in cols) >= 9  # group-A movies
    b_fan = {movie_id(25): 5, movie_id(26): 5, movie_id(27): 4, movie_id(2): 1}
    cols_b = [col_of(recommender, m) for m in recommender.recommend(b_fan, k=10).movie_ids]
    assert sum(c >= HALF for c in cols_b) >= 9
    # the most similar users of an A fan are group-A users (rows 0–99)
    near = [n["user_id"] - USER_BASE for n in result.neighbours]
    assert sum(u < 100 for u in near) >= 0.9 * len(near)


def test_rated_movies_are_never_recommended_and_unrated_movies_never_ranked(recommender):
    rated = {movie_id(c): 5 for c in range(HALF - 2)}
    for ranking in ("predicted", "damped", "lcb", "blend"):
        result = recommender.recommend(rated, k=N_MOVIES, ranking=ranking, explain=False)
        ids = set(result.movie_ids)
        assert not ids & set(rated)
        # every other movie but the one nobody rated in training
        assert ids == {movie_id(c) for c in range(HALF - 2, N_MOVIES - 1)}
        assert result.note and "Only" in result.note
        scores = [r.score for r in result.items]
        assert scores == sorted(scores, reverse=True)


def test_filters(recommender):
    counts = dict(zip(recommender.movie_ids.tolist(), recommender.counts.tolist()))
    threshold = int(np.median(recommender.counts))
    result = recommender.recommend(A_FAN, k=40, min_ratings=threshold)
    assert result.items and all(counts[r.movie_id] >= threshold for r in result.items)
    result = recommender.recommend(A_FAN, k=40, year_min=1990, year_max=1999)
    assert result.items and all(1990 <= r.year <= 1999 for r in result.items)
    assert recommender.recommend(A_FAN, year_min=2100).items == []
    with pytest.raises(ValueError, match="year_min"):
        recommender.recommend(A_FAN, year_min=2000, year_max=1990)
    with pytest.raises(ValueError, match="k must be"):
        recommender.recommend(A_FAN, k=0)
    with pytest.raises(ValueError, match="unknown ranking"):
        recommender.recommend(A_FAN, ranking="loudest")


def test_empty_profile_gets_the_documented_fallback(recommender):
    for empty in ({}, [], None):
        result = recommender.recommend(empty, k=5)
        assert result.fallback and "fallback" in result.note and result.ranking == "popular"
        assert len(result.items) == 5 and result.neighbours == [] and result.used_ratings == []
    popular = recommender.popular(k=5)
    assert popular.movie_ids == result.movie_ids
    means = [r.predicted_rating for r in result.items]
    assert min(means) > recommender.global_mean  # well-rated
    assert all(r.n_ratings >= recommender.popular_min_ratings() for r in result.items)
    excluded = recommender.popular(k=5, exclude=[result.movie_ids[0]])
    assert result.movie_ids[0] not in excluded.movie_ids


def test_bad_input_raises_clear_value_errors(recommender):
    with pytest.raises(UnknownMovie, match="movie id 99999 is not in this model"):
        recommender.recommend({99999: 5})
    with pytest.raises(UnknownMovie) as err:
        recommender.recommend({"Toy Stroies of Mars": 5})
    assert err.value.suggestions
    with pytest.raises(AmbiguousTitle) as amb:
        recommender.recommend({"the game": 5})
    assert {c["year"] for c in amb.value.candidates} == {1980, 1997}
    for bad in (7, 0, -1, math.nan, math.inf, "five", True, None):
        with pytest.raises(InvalidRating) as err:
            recommender.recommend({"toy story": bad})
        assert "Toy Story (1995)" in str(err.value)
    with pytest.raises(InvalidRating, match="1–5"):
        recommender.recommend([("toy story", 6)])
    with pytest.raises(InvalidRating, match="rated twice"):
        recommender.recommend([("toy story", 5), (movie_id(0), 3)])
    for error in (UnknownMovie, AmbiguousTitle, InvalidRating, UnknownUser):
        assert issubclass(error, ValueError)


def test_resolve_movie_and_movie_info(recommender):
    assert recommender.resolve_movie(movie_id(3)) == movie_id(3)
    assert recommender.resolve_movie(str(movie_id(3))) == movie_id(3)
    assert recommender.resolve_movie("Matrix, The (1999)") == movie_id(1)
    assert recommender.resolve_movie("game 1980") == movie_id(21)
    info = recommender.movie(movie_id(0))
    assert (info.title, info.year) == ("Toy Story", 1995) and info.n_ratings > 0
    assert info.to_dict()["label"] == "Toy Story (1995)"
    assert recommender.movie(movie_id(N_MOVIES - 1)).mean_rating is None
    with pytest.raises(UnknownMovie):
        recommender.movie(1)
    found = recommender.search_titles("toy", 5)
    assert [m.title for m in found[:2]] == ["Toy Story", "Toy Story 2"] or [
        m.title for m in found[:2]] == ["Toy Story 2", "Toy Story"]


def test_ratings_accepted_in_every_documented_shape(recommender):
    as_map = recommender.recommend({"toy story": 5, str(movie_id(7)): 4}, explain=False)
    as_pairs = recommender.recommend([("Toy Story", 5.0), (movie_id(7), "4")], explain=False)
    as_dicts = recommender.recommend(
        [{"title": "toy story", "rating": 5}, {"movie_id": movie_id(7), "rating": 4}],
        explain=False,
    )
    assert as_map.movie_ids == as_pairs.movie_ids == as_dicts.movie_ids
    assert [u["movie_id"] for u in as_map.used_ratings] == [movie_id(0), movie_id(7)]


def test_fold_in_is_the_autoencoder_forward_pass(recommender):
    cols, vals = recommender.parse_ratings(A_FAN)
    indptr = np.array([0, len(cols)])
    model = recommender.model
    dense = model.predict_dense(indptr, cols, vals)
    code, single = score_user(model, cols, vals)
    torch.testing.assert_close(single, dense[0])
    torch.testing.assert_close(code, model.encode(indptr, cols, vals)[0])
    assert code.shape == (8,)  # the code layer of layers=(32, 8)
    result = recommender.recommend(A_FAN, ranking="predicted", explain=False)
    for r in result.items:
        expected = np.clip(dense[0, col_of(recommender, r.movie_id)].item(), 1, 5)
        assert r.predicted_rating == pytest.approx(expected, abs=1e-4)


def test_known_user_equals_folding_in_their_stored_ratings(recommender):
    user = USER_BASE + 7
    known = recommender.recommend_for_user(user, k=10)
    stored = recommender.user_ratings(user)
    assert stored and len(stored) == len(known.used_ratings)
    folded = recommender.recommend([(r["movie_id"], r["rating"]) for r in stored], k=10)
    assert known.movie_ids == folded.movie_ids
    assert [r.score for r in known.items] == [r.score for r in folded.items]
    assert known.user_id == user
    assert user not in [n["user_id"] for n in known.neighbours]  # never their own neighbour
    assert not set(known.movie_ids) & {r["movie_id"] for r in stored}
    with pytest.raises(UnknownUser):
        recommender.recommend_for_user(12345678)
    empty = recommender.recommend_for_user(TEST_ONLY_USER, k=3)
    assert empty.fallback and "no stored training ratings" in empty.note
    assert empty.user_id == TEST_ONLY_USER and len(empty.items) == 3


def test_stored_ratings_are_the_training_split(recommender, planted_dir):
    from aerec.data.splits import make_splits
    from aerec.data.store import load_dataset

    ckpt = recommender.checkpoint
    splits = make_splits(load_dataset(planted_dir), **ckpt.split)
    stored = ckpt.ratings.matrix()
    assert (stored != splits.train).nnz == 0 and stored.nnz == splits.train.nnz
    assert ckpt.ratings.codes.dtype == np.uint8 and ckpt.ratings.indices.dtype == np.int32
    assert ckpt.ratings.indptr.dtype == np.int64
    payload = torch.load(ckpt.path, weights_only=True)
    assert set(payload["ratings"]) >= {"indptr", "indices", "codes"}


def test_explanations_name_real_neighbours_and_true_contributions(recommender):
    result = recommender.recommend(A_FAN, k=10)
    stored = recommender.checkpoint.ratings
    row_of = {int(u): i for i, u in enumerate(recommender.user_ids.tolist())}
    assert len(result.neighbours) == recommender.n_neighbours
    sims = [n["similarity"] for n in result.neighbours]
    assert sims == sorted(sims, reverse=True)
    cited = 0
    for item in result.items:
        col = col_of(recommender, item.movie_id)
        assert item.reason.endswith(".") and item.reason.count(".") >= 1
        assert len(item.similar_users) <= 5 and item.neighbours_liked <= item.neighbours_rated
        neighbour_ids = {n["user_id"] for n in result.neighbours}
        for u in item.similar_users:
            cited += 1
            assert u["user_id"] in neighbour_ids
            cols, ratings = stored.row(row_of[u["user_id"]])
            assert u["rating"] == ratings[list(cols).index(col)] >= 4
        if item.neighbours_liked:
            assert f"{item.neighbours_liked} of your 20 most similar users" in item.reason
    assert cited > 0

    # a named contribution is exactly the drop when that rating is left out
    cols, vals = recommender.parse_ratings(A_FAN)
    item = result.items[0]
    target = col_of(recommender, item.movie_id)
    assert item.pulled_up_by and item.reason.startswith("Because you rated")
    for pulled in item.pulled_up_by:
        keep = cols != col_of(recommender, pulled["movie_id"])
        full = recommender.model.predict_dense(np.array([0, len(cols)]), cols, vals)[0, target]
        without = recommender.model.predict_dense(
            np.array([0, int(keep.sum())]), cols[keep], vals[keep])[0, target]
        assert pulled["contribution"] == pytest.approx(float(full - without), abs=1e-3)
        assert pulled["contribution"] > 0


def test_leave_one_out_rows_match_separate_passes(recommender):
    cols, vals = recommender.parse_ratings(A_FAN)
    targets = np.array([7, 8, 30])
    tested, contrib = leave_one_out(recommender.model, cols, vals, targets)
    assert contrib.shape == (len(cols), 3)
    full = recommender.model.predict_dense(np.array([0, len(cols)]), cols, vals)[0]
    for i in tested:
        keep = np.arange(len(cols)) != i
        part = recommender.model.predict_dense(np.array([0, len(cols) - 1]), cols[keep],
                                               vals[keep])[0]
        np.testing.assert_allclose(contrib[i], (full - part)[targets].numpy(), atol=1e-5)


def _assert_plain(value) -> None:
    """Only JSON's own types (no NumPy scalars, no NaN), all the way down."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for v in value.values():
            _assert_plain(v)
    elif isinstance(value, list):
        for v in value:
            _assert_plain(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (type(value), value)
        assert not (type(value) is float and value != value)


def test_explain_false_skips_evidence_and_results_are_json_ready(recommender):
    quick = recommender.recommend(A_FAN, explain=False)
    full = recommender.recommend(A_FAN)
    assert quick.movie_ids == full.movie_ids
    assert quick.neighbours == [] and all(not r.similar_users and not r.pulled_up_by
                                          for r in quick.items)
    for result in (full, quick, recommender.recommend({}),
                   recommender.recommend_for_user(int(recommender.user_ids[0]))):
        _assert_plain(result.to_dict())  # what the HTTP API encodes without a sanitising pass
    payload = json.loads(json.dumps(full.to_dict(), allow_nan=False))
    assert payload["fallback"] is False and len(payload["items"]) == 10
    assert {"movie_id", "title", "year", "predicted_rating", "score", "reason",
            "similar_users", "pulled_up_by"} <= set(payload["items"][0])
    assert payload["ranking"] == full.ranking and payload["used_ratings"]


def test_ranking_modes_change_the_order_not_the_candidates(recommender):
    lists = {m: recommender.recommend(A_FAN, k=N_MOVIES, ranking=m, explain=False).movie_ids
             for m in ("predicted", "damped:1000", "lcb:2", "blend:1")}
    assert all(set(v) == set(lists["predicted"]) for v in lists.values())
    assert len({tuple(v) for v in lists.values()}) > 1


def test_a_ranking_head_is_the_default_when_the_model_has_one(recommender):
    import dataclasses

    from aerec.model.ranked import RankedModel

    assert not recommender.has_head and recommender.default_ranking == "blend"
    with pytest.raises(ValueError, match="no ranking head"):
        recommender.recommend(A_FAN, ranking="head")
    # a head that prefers high movie columns, whatever the predicted ratings
    weights = np.zeros((N_MOVIES, N_MOVIES), np.float32)
    weights[:, :] = np.arange(N_MOVIES, dtype=np.float32)[None, :] / N_MOVIES
    ranked = RankedModel(recommender.model, weights, rating_weight=0.0)
    rec = Recommender(dataclasses.replace(recommender.checkpoint, model=ranked))
    assert rec.has_head and rec.default_ranking == "head"
    result = rec.recommend(A_FAN, k=5)
    assert result.ranking == "head"
    rated = set(rec.parse_ratings(A_FAN)[0].tolist())  # columns
    expected = [c for c in range(N_MOVIES - 2, -1, -1) if c not in rated][:5]
    assert [col_of(rec, m) for m in result.movie_ids] == expected  # the unrated last one never
    assert result.items[0].pulled_up_by or result.items[0].reason  # still explained
    blend = rec.recommend(A_FAN, k=5, ranking="blend")
    assert blend.movie_ids == recommender.recommend(A_FAN, k=5).movie_ids


def test_loads_from_the_checkpoint_file_alone(planted_run, tmp_path, recommender):
    lonely = tmp_path / "elsewhere" / "model.pt"
    lonely.parent.mkdir()
    shutil.copy(planted_run / "best.pt", lonely)
    moved_run = tmp_path / "moved-run"
    moved_run.mkdir()
    shutil.copy(planted_run / "best.pt", moved_run / "best.pt")
    for path in (lonely, moved_run):
        rec = Recommender.load(path)
        assert rec.recommend(A_FAN).movie_ids == recommender.recommend(A_FAN).movie_ids
        assert rec.recommend_for_user(USER_BASE + 3).movie_ids == \
            recommender.recommend_for_user(USER_BASE + 3).movie_ids
    with pytest.raises(FileNotFoundError):
        Recommender.load(tmp_path / "nothing-here")


def test_checkpoint_without_ratings_still_serves_new_users(planted_run, tmp_path, recommender):
    payload = torch.load(planted_run / "best.pt", weights_only=True)
    del payload["ratings"]
    del payload["digest"]  # checkpoints from before stored ratings had no digest either
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    rec = Recommender.load(old)
    result = rec.recommend(A_FAN)
    assert result.movie_ids == recommender.recommend(A_FAN).movie_ids
    assert result.neighbours == [] and all(not r.similar_users for r in result.items)
    with pytest.raises(UnknownUser, match="stores no training ratings"):
        rec.recommend_for_user(USER_BASE + 1)


def test_reason_sentence_names_liked_and_disliked_ratings():
    from aerec.recommend.explain import reason_sentence

    pulled = [{"label": "Heat (1995)", "rating": 5.0}, {"label": "Babe (1995)", "rating": 1.0},
              {"label": "Fargo (1996)", "rating": 3.0}]
    text = reason_sentence(pulled, 20, 7, 4.0, 4.3)
    assert text == ("Because you rated Heat (1995) 5★ and Fargo (1996) 3★ and disliked "
                    "Babe (1995) (1★); 7 of your 20 most similar users rated it 4★ or more.")
    assert reason_sentence([], 0, 0, 4.0, 4.25) == "Predicted 4.25★ from your ratings as a whole."


def test_typed_titles_are_echoed_as_resolved(recommender):
    result = recommender.recommend(A_FAN, explain=False)
    assert [(r["query"], r["title"], r["year"]) for r in result.resolved] == [
        ("toy story", "Toy Story", 1995), ("The Matrix", "Matrix, The", 1999),
        ("amelie", "Amélie", 2001), ("Beta Movie 30", "Beta Movie 30", 2010)]
    assert result.resolved[1]["movie_id"] == movie_id(1)  # the id is not a typed title
    assert result.to_dict()["resolved"] == result.resolved
    assert recommender.recommend({movie_id(3): 5}).resolved == []


def test_every_list_says_in_words_why_it_is_in_this_order(recommender):
    notes = set()
    for ranking in ("predicted", "damped", "lcb", "blend"):
        result = recommender.recommend(A_FAN, ranking=ranking, explain=False)
        assert result.order_note.startswith("Ordered by") and result.order_note.endswith(".")
        assert result.to_dict()["order_note"] == result.order_note
        notes.add(result.order_note)
    assert len(notes) == 4
    assert "lower predicted rating can rank higher" in recommender.recommend(A_FAN).order_note
    fallback = recommender.recommend({}, k=3)
    assert "average rating, pulled towards the overall average" in fallback.order_note
    for result in (fallback, recommender.popular(k=3), recommender.recommend_for_user(
            TEST_ONLY_USER, k=3)):
        assert result.order_note and "damped" not in (result.note or "").lower()
