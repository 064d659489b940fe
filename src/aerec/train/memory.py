"""How much memory a configuration needs, estimated before anything is allocated.

:func:`check_memory` refuses, with one line that gives the estimate, a configuration whose
model cannot fit in the memory this machine has available — e.g. ``layers = [1000000000]``,
which would otherwise try to allocate hundreds of gigabytes and die in the attempt. The
estimate counts what is certain to be allocated (a lower bound, so a run that fits is never
refused):

- autoencoders: the parameters (float32) times their copies — the weights, their gradients,
  the best epoch's copy, the copy a checkpoint is written from and the optimiser's state
  (Adam: two moments, SGD with momentum: one) — plus one batch's hidden activations;
- Bayesian MF: the kept posterior samples (float64 movie vectors, user prior mean and
  precision, movie scales; the best sweep's set and the running set) plus the chain's state
  (user and movie vectors, per-rating arrays);
- an ensemble: its largest member (members are trained one after another).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aerec.config import ConfigError, TrainConfig

FLOAT32, FLOAT64 = 4, 8
#: Bytes the Gibbs sampler keeps per training rating (values, weights, index arrays).
BYTES_PER_RATING = 40


@dataclass(frozen=True)
class MemoryEstimate:
    """What a configuration needs: ``bytes`` in all, and what they are, in words."""

    bytes: int
    what: str
    #: What to change to need less.
    advice: str
    #: Where it is needed: "cpu" or "cuda".
    device: str = "cpu"
    #: Trainable parameters (autoencoders) or kept sample values (Bayesian MF).
    parameters: int = 0


def format_bytes(n: float) -> str:
    """``3.8 TB``, ``512 MB``, ``12 kB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def autoencoder_memory(config: TrainConfig, n_users: int, n_movies: int,
                       n_ratings: int = 0) -> MemoryEstimate:
    """An autoencoder's parameters, optimiser state and activations."""
    item = config.orientation == "item"
    n_columns, n_rows = (n_users, n_movies) if item else (n_movies, n_users)
    layers = list(config.layers)
    widths = layers + layers[-2::-1]
    pairs = list(zip(widths, widths[1:]))
    encoder_pairs = pairs[: len(layers) - 1] if config.tied else pairs
    params = n_columns * widths[0] + widths[0]
    params += sum(a * b + b for a, b in encoder_pairs)
    if config.tied:
        params += sum(b for _, b in pairs[len(layers) - 1:])
    else:
        params += widths[-1] * n_columns
    params += n_columns
    # the movie codes an item model keeps for scoring (buffers: no gradients, no moments)
    buffers = n_movies * (widths[-1] + 1) + n_users if item else 0
    if config.centring != "none":  # the centring baseline's column biases
        buffers += n_columns + 1
    moments = {"adam": 2, "adamw": 2}.get(config.optimizer, 1 if config.momentum > 0 else 0)
    copies = 4 + moments  # weights, gradients, best epoch, checkpoint copy, optimiser state
    batch = max(1, min(config.batch_size, n_rows))
    activations = batch * sum(widths) * 2  # forward values kept for the backward pass
    if config.refeed:
        activations += batch * n_columns * 2  # the dense re-fed reconstruction
    total = (params * copies + buffers * 3 + activations) * FLOAT32
    layer_text = ", ".join(str(w) for w in layers)
    return MemoryEstimate(
        total,
        f"layers [{layer_text}] on {n_columns:,} {'users' if item else 'movies'}: "
        f"{params:,} parameters ({format_bytes(params * FLOAT32)}) × {copies} copies with "
        f"gradients and {config.optimizer} state",
        "choose smaller layers",
        "cuda" if _wants_cuda(config) else "cpu",
        params,
    )


def bayesian_memory(config: TrainConfig, n_users: int, n_movies: int,
                    n_ratings: int) -> MemoryEstimate:
    """A Gibbs chain's state and its kept posterior samples."""
    d, kept = config.factors, config.kept_samples
    per_sample = n_movies * d + d + d * d + n_movies
    samples = 2 * kept * per_sample * FLOAT64  # the best sweep's set and the running set
    vectors = (n_users + n_movies) * d * (2 if config.audience_prior else 1)
    state = (vectors + 2 * d * d) * FLOAT64 + n_ratings * BYTES_PER_RATING
    return MemoryEstimate(
        samples + state,
        f"bayesian-mf with {d:,} factors: {kept:,} kept samples of {n_movies:,} movies "
        f"({format_bytes(samples)}) and the chain over {n_users:,} users "
        f"({format_bytes(state)})",
        "choose fewer factors or kept_samples",
        parameters=kept * per_sample,
    )


def _wants_cuda(config: TrainConfig) -> bool:
    if config.device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def estimate_memory(config: TrainConfig, n_users: int, n_movies: int,
                    n_ratings: int) -> MemoryEstimate:
    """The memory training ``config`` needs on data of this shape (``n_ratings`` training
    ratings), as the model's family estimates it (an ensemble's is its largest member's).
    ``model = "auto"`` is planned first by :func:`aerec.train.train`; here it counts as
    nothing."""
    if config.model == "auto":  # a plan, not a model yet
        return MemoryEstimate(0, "auto", "")
    from aerec.model.base import kind_of, trainer_for

    return trainer_for(kind_of(config)).estimate_memory(config, n_users, n_movies, n_ratings)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory(device: str = "cpu") -> int | None:
    """Bytes of memory available to this process now (``None`` when unknown): on the CPU
    ``MemAvailable`` of ``/proc/meminfo``, capped by a cgroup (container) limit; on a GPU the
    free memory CUDA reports."""
    if device == "cuda":
        try:
            import torch

            return int(torch.cuda.mem_get_info()[0])
        except (RuntimeError, AssertionError):  # pragma: no cover - no usable GPU
            return None
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        available = None
    if available is None:
        try:
            import os

            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = None
    for limit_file in ("/sys/fs/cgroup/memory.max",
                       "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        limit = _read_int(limit_file)
        if limit is not None and limit < (1 << 60):
            available = limit if available is None else min(available, limit)
    return available


def check_memory(config: TrainConfig, n_users: int, n_movies: int, n_ratings: int,
                 available: int | None = None) -> MemoryEstimate:
    """Raise a one-line :class:`~aerec.config.ConfigError` when ``config`` needs more memory
    than is available (``available`` bytes; default :func:`available_memory` of the device
    the model would be trained on); returns the estimate otherwise."""
    estimate = estimate_memory(config, n_users, n_movies, n_ratings)
    if estimate.bytes == 0:
        return estimate
    if available is None:
        available = available_memory(estimate.device)
    if available is not None and estimate.bytes > available:
        where = "GPU memory" if estimate.device == "cuda" else "memory"
        raise ConfigError(
            f"this configuration needs about {format_bytes(estimate.bytes)} of {where} "
            f"({estimate.what}) but only {format_bytes(available)} is available; "
            f"{estimate.advice}"
        )
    return estimate


__all__ = ["MemoryEstimate", "available_memory", "check_memory", "estimate_memory",
           "format_bytes"]
