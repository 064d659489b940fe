"""Data-parallel training on ``torch.distributed``, launched with ``torchrun``.

``torchrun --nproc_per_node N -m aerec train DATA --out RUN`` starts N processes (ranks) with
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` / ``MASTER_PORT`` set; :func:`setup` joins them in
one process group — gloo on the CPU, NCCL on CUDA — with a timeout, so a rank that dies makes
the others stop with :class:`PeerLost` instead of waiting for ever.

What each rank does (the autoencoder family, :mod:`aerec.train.trainer`):

* every global batch of ``batch_size`` rows (users, or movies for the item-based network) is
  the same on every rank — the shuffle is drawn from the same seeded generator — and rank ``r``
  takes rows ``r, r + N, r + 2N, …`` of it, read straight from the memory-mapped prepared store;
* the loss is each rank's squared error over the *global* batch's number of ratings (every rank
  knows it from the CSR offsets), so the summed gradient is exactly the one-process gradient of
  the global batch, and every rank applies the same Adam update (the parameters stay identical;
  dropout masks are drawn per rank);
* gradients are exchanged by :func:`reduce_step`. The two ``n_movies × width`` matrices (first
  and last layer) are not all-reduced as dense gradients: their gradients are row records
  (:class:`~aerec.model.sparse_ops.RowGradient`: a few hundred ``(batch, width)`` rows and the
  batch's ratings), every rank's records are all-gathered and merged, and each rank feeds the
  merged record to :class:`~aerec.train.row_adam.RowAdam`'s fused row update — the speed of the
  one-process path, and ``O(batch × width)`` bytes a step instead of ``O(n_movies × width)``.
  The middle layers and biases (small) are summed in one flat all-reduce, the squared-error sum
  and the records' sizes riding along: two collectives a step;
* validation users are split by rank and the error sums all-reduced: the same figures as one
  process;
* rank 0 alone writes config.toml, metrics.csv, the plot and the checkpoints (the others wait at
  a barrier before reading them back), and alone reports progress.

The Bayesian factorisation trains on one machine (docs/distributed.md says up to what size).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from aerec.model.sparse_ops import RowGradient

#: Seconds a collective (or the start-up rendezvous) may wait for the other ranks before the
#: job stops (``AEREC_DIST_TIMEOUT`` overrides): long enough for rank 0 to write a checkpoint
#: or choose a ranking head while the others wait, short enough that a lost rank is noticed.
DEFAULT_TIMEOUT = 600.0


P = ParamSpec("P")
R = TypeVar("R")


class PeerLost(RuntimeError):
    """Another rank stopped (killed, crashed, or unreachable): this one stops too."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world`` (``world == 1``: no job)."""

    rank: int = 0
    world: int = 1
    #: Where this rank's collectives put their small tensors (its GPU under NCCL).
    device: torch.device = torch.device("cpu")

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
        return self.sum(torch.tensor(values, dtype=torch.float64,
                                     device=self.device)).tolist()

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (the same shape on every rank), in rank order."""
        if not self.active:
            return [tensor]
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        with collective(self):
            dist.all_gather(parts, tensor.contiguous())
        return parts

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
    where = device_for(device) if device.type == "cuda" else torch.device("cpu")
    return Ranks(dist.get_rank(), dist.get_world_size(), where)


def share_cores(threads: int) -> None:
    """Size Numba's thread pool to this rank's ``threads`` (ranks sharing a machine share its
    cores). Numba's OpenMP pool, sized to every core by default, keeps its idle threads
    spinning after each kernel: two ranks, each with a pool of all cores, measured 10× slower
    per epoch than with a pool of their own share. Takes effect when the pool has not started
    yet (it starts with the first parallel kernel)."""
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    numba = sys.modules.get("numba")
    if numba is not None:
        from numba.np.ufunc import parallel

        if not getattr(parallel, "_is_initialized", False):
            numba.config.NUMBA_NUM_THREADS = threads


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
    return float(_sum_flat(ranks, parameters, torch.tensor([extra], dtype=torch.float64))[0])


def _sum_flat(ranks: Ranks, parameters: list[torch.Tensor],
              tail: torch.Tensor) -> torch.Tensor:
    """One all-reduce (sum) of the parameters' gradients (set to the sums) with ``tail``
    riding along in their dtype; returns ``tail`` summed (float64). ``tail`` must be exact
    in that dtype (integers below 2**24 for float32)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    dtype = grads[0].dtype if grads else torch.float64
    device = grads[0].device if grads else ranks.device
    flat = torch.cat([g.reshape(-1) for g in grads] + [tail.to(dtype=dtype, device=device)])
    ranks.sum(flat)
    offset = 0
    for p, g in zip(parameters, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p)
        offset += n
    return flat[offset:].to(torch.float64).cpu()


#: The largest integer every float of a dtype holds exactly (record sizes ride in floats).
_EXACT = {torch.float32: 2**24, torch.float64: 2**53}


def reduce_step(ranks: Ranks, parameters: list[torch.Tensor],
                rows: dict[torch.Tensor, list[RowGradient]] | None = None,
                extra: float = 0.0, row_weights: list[torch.Tensor] = ()) -> float:
    """Exchange one step's gradients between the ranks; returns ``extra`` summed over them.

    ``row_weights`` (the same on every rank: the model's first- and last-layer matrices)
    travel as row records, ``rows`` being this rank's from the backward
    (``RowAdam.row_gradients``; ``None`` when the optimiser takes dense gradients only, and
    then every gradient is all-reduced densely). Two collectives: one all-reduce of the other
    parameters' dense gradients with ``extra`` and every rank's record sizes riding along,
    then one all-gather of the records. Afterwards every rank holds the same global
    gradients: each row weight one merged record of every rank's rows in ``rows``, every other
    parameter its summed ``.grad``.
    """
    if not ranks.active:
        return extra
    by_id = {id(p) for p in row_weights}
    row_weights = [p for p in parameters if id(p) in by_id]
    if rows is None or not row_weights:
        if rows:  # records of weights the caller did not name: summed densely
            _densify(rows, parameters)
        return all_reduce_gradients(ranks, parameters, extra)
    dense = [p for p in parameters if id(p) not in by_id]
    _densify(rows, dense)
    local: dict[int, RowGradient] = {}
    sizes = torch.zeros(ranks.world, len(row_weights), 2, dtype=torch.float64)
    for i, p in enumerate(row_weights):
        parts = list(rows.get(p, ()))
        if p.grad is not None:  # a dense gradient too (the weight also used densely)
            parts.append(_dense_record(p.grad))
            p.grad = None
        if parts:
            local[i] = concat_records(parts, p.shape[0])
            sizes[ranks.rank, i, 0] = local[i].source.shape[0]
            sizes[ranks.rank, i, 1] = local[i].src_rows.numel()
    wire = dense[0].dtype if dense else torch.float64
    if float(sizes.max()) >= _EXACT.get(wire, 2**24):
        raise ValueError(f"a rank's share of one batch is too large to exchange "
                         f"({int(sizes.max()):,} rows or ratings); use a smaller batch_size")
    tail = _sum_flat(ranks, dense, torch.cat([torch.tensor([extra], dtype=torch.float64),
                                              sizes.reshape(-1)]))
    every = tail[1:].round().to(torch.int64).reshape(sizes.shape)
    rows.clear()
    if int(every.sum()):
        for p, merged in _gather_records(ranks, row_weights, local, every).items():
            rows[p] = [merged]
    return float(tail[0])


def _densify(rows: dict[torch.Tensor, list[RowGradient]],
             parameters: list[torch.Tensor]) -> None:
    """Turn the records of ``parameters`` in ``rows`` into dense ``.grad`` (removed from
    ``rows``)."""
    for p in parameters:
        found = rows.pop(p, None)
        if found:
            gradient = sum(record.dense() for record in found)
            p.grad = gradient if p.grad is None else p.grad + gradient


def _dense_record(gradient: torch.Tensor) -> RowGradient:
    """A dense ``(n_rows, width)`` gradient as a record (each row its own source row)."""
    n_rows = gradient.shape[0]
    index = torch.arange(n_rows, device=gradient.device)
    return RowGradient(torch.arange(n_rows + 1, device=gradient.device), index,
                       torch.ones(n_rows, dtype=gradient.dtype, device=gradient.device),
                       gradient)


def concat_records(parts: list[RowGradient], n_rows: int) -> RowGradient:
    """One record whose gradient is the sum of ``parts``' (records of one ``(n_rows, width)``
    weight): their sources stacked, their entries merged row by row (in part order within a
    row, so every rank that merges the same parts gets the same record)."""
    if len(parts) == 1:
        return parts[0]
    return _merge([(_entry_rows(p.colptr), p.src_rows, p.coef, p.source) for p in parts],
                  n_rows)


def _merge(parts: list[tuple[torch.Tensor, ...]], n_rows: int) -> RowGradient:
    """:func:`concat_records` of parts given as ``(weight row of each entry, src_rows, coef,
    source)``."""
    targets, src_rows, coefs, sources = [], [], [], []
    offset = 0
    for target, src, coef, source in parts:
        targets.append(target)
        src_rows.append(src + offset)
        coefs.append(coef)
        sources.append(source)
        offset += source.shape[0]
    target = torch.cat(targets)
    order = torch.argsort(target, stable=True)
    return RowGradient(_colptr(target[order], n_rows), torch.cat(src_rows)[order],
                       torch.cat(coefs)[order], torch.cat(sources))


def _entry_rows(colptr: torch.Tensor) -> torch.Tensor:
    """The weight row of each entry of a record (its ``colptr`` expanded)."""
    if colptr.device.type != "cpu":
        return torch.repeat_interleave(torch.arange(colptr.numel() - 1, device=colptr.device),
                                       colptr.diff())
    counts = np.diff(colptr.numpy())  # NumPy's repeat: ~40× torch's on the CPU here
    return torch.from_numpy(np.repeat(np.arange(counts.size, dtype=np.int64), counts))


def _colptr(target: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Row offsets of entries whose weight rows are ``target`` (sorted)."""
    colptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=target.device)
    torch.cumsum(torch.bincount(target, minlength=n_rows), 0, out=colptr[1:])
    return colptr


#: How an entry's integer fields travel inside a float buffer: bit for bit, as the integer
#: type of the float's width (no rounding).
_INT_OF = {torch.float32: torch.int32, torch.float64: torch.int64}


def _gather_records(ranks: Ranks, row_weights: list[torch.Tensor],
                    local: dict[int, RowGradient],
                    sizes: torch.Tensor) -> dict[torch.Tensor, RowGradient]:
    """All-gather every rank's records of ``row_weights`` (``sizes``: every rank's ``(source
    rows, entries)`` per weight) in one float buffer, padded to the longest, and merge them."""
    wire = torch.float64 if any(p.dtype == torch.float64 for p in row_weights) \
        else torch.float32
    as_int = _INT_OF[wire]
    device = row_weights[0].device
    widths = torch.tensor([p.shape[1] for p in row_weights])
    lengths = (sizes[:, :, 0] * widths + 3 * sizes[:, :, 1]).sum(dim=1)
    pieces = []
    for i in range(len(row_weights)):
        record = local.get(i)
        if record is not None:
            pieces += [record.source.to(wire).reshape(-1), record.coef.to(wire),
                       record.src_rows.to(as_int).view(wire),
                       _entry_rows(record.colptr).to(device).to(as_int).view(wire)]
    buffer = torch.zeros(int(lengths.max()), dtype=wire, device=device)
    if pieces:
        mine = torch.cat(pieces)
        buffer[: mine.numel()] = mine
    gathered = ranks.gather(buffer)
    merged: dict[torch.Tensor, RowGradient] = {}
    offsets = [0] * ranks.world
    for i, p in enumerate(row_weights):
        parts = []
        for rank, data in enumerate(gathered):
            n_source, nnz = int(sizes[rank, i, 0]), int(sizes[rank, i, 1])
            if not n_source and not nnz:
                continue
            at, width = offsets[rank], p.shape[1]
            source = data[at : at + n_source * width].view(n_source, width)
            at += n_source * width
            coef, src, target = (data[at + k * nnz : at + (k + 1) * nnz] for k in range(3))
            offsets[rank] = at + 3 * nnz
            parts.append((target.view(as_int).long(), src.view(as_int).long(),
                          coef.to(p.dtype), source.to(p.dtype)))
        if parts:
            merged[p] = _merge(parts, p.shape[0])
    return merged


def close(orderly: bool = True) -> None:
    """Leave the process group: after a barrier when ``orderly`` (every rank is done with its
    collectives, so none tears down a connection another still uses), at once after a
    failure. Gloo's worker threads otherwise meet a half-finalised interpreter at exit and
    abort the process."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if orderly:
            ranks = Ranks(dist.get_rank(), dist.get_world_size())
            ranks.barrier()
    finally:
        with contextlib.suppress(RuntimeError, ValueError):
            dist.destroy_process_group()


def leaves_job(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` (which joins the job through :func:`setup`) leaves the job when it
    returns or fails — unless the job was joined before it was called (a nested run)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not launched() or dist.is_initialized():
            return function(*args, **kwargs)
        try:
            result = function(*args, **kwargs)
        except BaseException:
            close(orderly=False)
            raise
        close()
        return result

    return wrapper


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = ["ALONE", "PeerLost", "Ranks", "all_reduce_gradients", "concat_records", "launched",
           "leaves_job", "reduce_step", "setup"]
