"""Plain, JSON-ready values: one conversion for every answer, report and record aerec writes.

JSON has no NaN or infinity, no tuples, no NumPy scalars and only string keys; results carry
all of these. :func:`plain` turns them into what ``json.dumps`` (or orjson) takes as is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def plain(value: Any, *, keep_non_finite: bool = False) -> Any:
    """``value`` as plain Python values, recursively:

    * floats, Python or NumPy → ``float``; NaN and ±infinity → ``None`` (``keep_non_finite``:
      kept as floats, for files that may hold them, such as checkpoints);
    * NumPy integers and booleans → ``int`` and ``bool``; NumPy arrays (and anything else with
      ``tolist()``, such as a torch tensor) → (nested) lists;
    * mappings → ``dict`` with ``str`` keys; tuples and lists → lists;
    * objects with ``to_dict()`` (result dataclasses) → their dict, converted in turn;
    * everything else (``str``, ``int``, ``bool``, ``None``, paths…) as it is.
    """
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if keep_non_finite or math.isfinite(number) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v, keep_non_finite=keep_non_finite) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, keep_non_finite=keep_non_finite) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return plain(to_dict(), keep_non_finite=keep_non_finite)
    to_list = getattr(value, "tolist", None)
    if callable(to_list):  # NumPy arrays, torch tensors
        return plain(to_list(), keep_non_finite=keep_non_finite)
    return value


__all__ = ["plain"]
