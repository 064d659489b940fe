"""Recommending: a checkpoint → explained top-N lists for new and known users.

    from aerec.recommend import Recommender

    rec = Recommender.load("runs/seed")                      # a run dir or a .pt file, nothing else
    top = rec.recommend({"Toy Story": 5, "Babe (1995)": 4, 50: 5}, k=10)
    for item in top.items:
        print(item.title, item.year, item.predicted_rating, item.reason)
    rec.recommend_for_user(196)                              # a known (training) user
    rec.search_titles("star w")                              # incremental title search
    top.order_note, top.resolved                             # why this order; titles as read
    rec.write_all("recs.parquet", k=10)                      # every known user, in batches
"""

from aerec.recommend.errors import (
    AmbiguousTitle,
    InvalidRating,
    RecommendError,
    UnknownMovie,
    UnknownUser,
)
from aerec.recommend.ranking import DEFAULT_RANKING, RANKING_MODES, parse_ranking
from aerec.recommend.recommender import Recommender
from aerec.recommend.results import MovieInfo, Recommendation, Recommendations
from aerec.recommend.titles import TitleIndex

__all__ = [
    "DEFAULT_RANKING",
    "RANKING_MODES",
    "AmbiguousTitle",
    "InvalidRating",
    "MovieInfo",
    "RecommendError",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "TitleIndex",
    "UnknownMovie",
    "UnknownUser",
    "parse_ranking",
]
