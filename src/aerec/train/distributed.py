"""Data-parallel training on ``torch.distributed``, launched with ``torchrun``.

``torchrun --nproc_per_node N -m aerec train DATA --out RUN`` starts N processes (ranks) with
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` / ``MASTER_PORT`` set; :func:`setup` joins them in
one process group — gloo on the CPU, NCCL on CUDA — with a timeout, so a rank that dies makes
the others stop with :class:`PeerLost` instead of waiting for ever.

What each rank does (the autoencoder family, :mod:`aerec.train.trainer`):

* every global batch of ``batch_size`` rows (users, or movies for the item-based network) is
  the same on every rank — the shuffle is drawn from the same seeded generator — and rank ``r``
  takes rows ``r, r + N, r + 2N, …`` of it, read straight from the memory-mapped prepared store;
* the loss is each rank's squared error over the *global* batch's number of ratings (one small
  all-reduce of the count), so the summed gradient is exactly the one-process gradient of the
  global batch; gradients are summed in one flat all-reduce per step and every rank applies the
  same Adam update (the parameters stay identical; dropout masks are drawn per rank);
* validation users are split by rank and the error sums all-reduced: the same figures as one
  process;
* rank 0 alone writes config.toml, metrics.csv, the plot and the checkpoints (the others wait at
  a barrier before reading them back), and alone reports progress.

The Bayesian factorisation trains on one machine (docs/distributed.md says up to what size).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

#: Seconds a collective (or the start-up rendezvous) may wait for the other ranks before the
#: job stops (``AEREC_DIST_TIMEOUT`` overrides): long enough for rank 0 to write a checkpoint
#: or choose a ranking head while the others wait, short enough that a lost rank is noticed.
DEFAULT_TIMEOUT = 600.0


class PeerLost(RuntimeError):
    """Another rank stopped (killed, crashed, or unreachable): this one stops too."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world`` (``world == 1``: no job)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes files and reports progress (rank 0)."""
        return self.rank == 0

    def shard(self, rows: Any) -> Any:
        """This rank's share of ``rows``: every ``world``-th one, from position ``rank``."""
        return rows[self.rank :: self.world] if self.active else rows

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (itself when alone)."""
        if self.active:
            with collective(self):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_floats(self, *values: float) -> list[float]:
        """Floats summed over the ranks (float64)."""
        if not self.active:
            return list(values)
        return self.sum(torch.tensor(values, dtype=torch.float64)).tolist()

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. rank 0 has written a checkpoint)."""
        if self.active:
            with collective(self):
                dist.barrier()


ALONE = Ranks()


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) as one of
    several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout() -> float:
    """The collective timeout in seconds (``AEREC_DIST_TIMEOUT``, else
    :data:`DEFAULT_TIMEOUT`)."""
    return float(os.environ.get("AEREC_DIST_TIMEOUT", DEFAULT_TIMEOUT))


def setup(device: torch.device) -> Ranks:
    """Join the job this process was launched into (once); :data:`ALONE` when there is none.

    The backend is NCCL when training on CUDA (each rank on GPU ``LOCAL_RANK``), gloo on the
    CPU."""
    if not launched():
        return ALONE
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout()))
        except (RuntimeError, ValueError) as exc:
            raise PeerLost(
                f"rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE')}: could "
                f"not join the other ranks within {timeout():.0f} s ({_first_line(exc)}); check "
                "that every rank was started with the same --rdzv-endpoint / MASTER_ADDR"
            ) from None
    return Ranks(dist.get_rank(), dist.get_world_size())


def device_for(device: torch.device) -> torch.device:
    """The device of this rank: its own GPU (``LOCAL_RANK``) when training on CUDA."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextmanager
def collective(ranks: Ranks) -> Iterator[None]:
    """Turn a failed collective (a rank died, timed out, or the network dropped) into one
    clear :class:`PeerLost`."""
    try:
        yield
    except PeerLost:
        raise
    except (RuntimeError, dist.DistError) as exc:
        raise PeerLost(
            f"rank {ranks.rank} of {ranks.world}: another rank stopped or stopped answering "
            f"({_first_line(exc)}); the job stops. Start it again with --resume to continue from "
            "the last checkpoint"
        ) from None


def all_reduce_gradients(ranks: Ranks, parameters: list[torch.Tensor],
                         extra: float = 0.0) -> float:
    """Sum the parameters' gradients over the ranks in one flat all-reduce (a parameter
    without a gradient on this rank counts as zeros); ``extra`` rides along and its sum is
    returned (e.g. the squared-error sum, so a step needs one collective)."""
    if not ranks.active:
        return extra
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads]
                     + [torch.tensor([extra], dtype=grads[0].dtype)])
    ranks.sum(flat)
    offset = 0
    for p, g in zip(parameters, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p)
        offset += n
    return float(flat[-1])


def close() -> None:
    """Leave the process group (at the end of a run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = ["ALONE", "PeerLost", "Ranks", "all_reduce_gradients", "launched", "setup"]
