"""Tensors derived from a model's buffer, kept until the buffer changes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def derived(
    owner: nn.Module, name: str, source: torch.Tensor, build: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """``build()``, computed once and kept on ``owner`` under ``name`` until ``source``
    changes: its storage (``.to``, a new tensor) or its version counter, which every in-place
    write moves, ``load_state_dict`` included. For what prediction derives from stored
    parameters on every call (e.g. a float64 copy), so a server builds it once."""
    key = (source.data_ptr(), source._version)
    cached = owner.__dict__.get(name)
    if cached is None or cached[0] != key:
        cached = (key, build())
        owner.__dict__[name] = cached
    return cached[1]
