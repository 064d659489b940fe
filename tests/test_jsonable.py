"""``aerec.jsonable.plain``: the one NaN → ``None`` conversion behind every JSON answer and
report (server answers, evaluation reports, tuning records, checkpoint notes)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from aerec.jsonable import plain


@dataclass
class _Result:
    score: float

    def to_dict(self) -> dict:
        return {"score": self.score, "ids": (np.int64(3), 4)}


def test_non_finite_floats_become_none_python_and_numpy():
    for bad in (math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("-inf")):
        assert plain(bad) is None
    assert plain(0.25) == 0.25 and type(plain(np.float32(0.25))) is float


def test_numpy_scalars_and_arrays_become_python_values():
    assert plain(np.int64(7)) == 7 and type(plain(np.int64(7))) is int
    assert plain(np.bool_(True)) is True
    assert plain(np.array([[1.5, np.nan], [2.0, 3.0]])) == [[1.5, None], [2.0, 3.0]]


def test_containers_tuples_and_keys():
    value = {1.5: (1, 2), "a": [np.float64(1.0), (np.nan,)], 3: {"b": None}}
    assert plain(value) == {"1.5": [1, 2], "a": [1.0, [None]], "3": {"b": None}}


def test_objects_with_to_dict_are_expanded():
    assert plain([_Result(math.nan)]) == [{"score": None, "ids": [3, 4]}]


def test_other_values_are_left_as_they_are():
    marker = object()
    for value in ("text", 3, True, None, marker):
        assert plain(value) is value


def test_keep_non_finite_for_files_that_hold_nan():
    out = plain({"rmse": math.nan, 2: (np.float32(math.inf),)}, keep_non_finite=True)
    assert math.isnan(out["rmse"]) and out["2"] == [math.inf]


@pytest.mark.parametrize("value", [
    {"x": np.float32(1.25), "y": [np.int32(2), (math.nan, np.inf)], 5: np.arange(3)},
    [_Result(1.0), _Result(math.inf)],
])
def test_the_result_is_strict_json(value):
    json.dumps(plain(value), allow_nan=False)  # raises on NaN left over; NumPy values would fail too
