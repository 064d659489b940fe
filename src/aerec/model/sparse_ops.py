"""The two sparse products that let the autoencoder skip the dense users × movies matrix.

* :func:`sparse_input_linear` — the first layer, ``X @ W`` for a sparse rating batch ``X``
  ``(batch, n_movies)`` and ``W`` ``(n_movies, width)``: only the rated movies' rows of ``W``
  are read (``embedding_bag`` with the ratings as per-sample weights).
* :func:`sampled_output_linear` — the last layer evaluated only where it is needed:
  ``(H @ W.T)[rows, cols]`` for ``H`` ``(batch, width)`` and ``W`` ``(n_movies, width)``, without
  forming the ``(batch, n_movies)`` product (a sampled dense-dense product, SDDMM:
  ``torch.sparse.sampled_addmm`` forward, two ``embedding_bag`` sums backward). Measured on CPU
  (batch 128, 4,499 movies, ~51 ratings/user, forward + backward): 3.2 ms, against 13.4 ms for
  the dense ``(batch, n_movies)`` product followed by a gather.

Both compute exactly the function of their dense counterparts (up to float summation order),
and their backward passes return the dense-layout gradients that the dense network would get
(zero rows for movies absent from the batch), so any optimiser behaves identically.

**Deferred row gradients.** Inside :func:`deferring_row_gradients` the weight gradient of
either product is not materialised: the backward records it as a :class:`RowGradient` (per
weight row: a weighted sum of a few rows of a small ``(batch, width)`` matrix) and leaves the
weight's ``.grad`` untouched, for an optimiser that consumes the record directly
(:class:`aerec.train.row_adam.RowAdam` fuses it into the Adam update). Outside that context
the backward passes return ordinary dense gradients.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aerec.model.kernels import as_numpy, numba_threads, sampled_dot_kernel
from aerec.model.sparse_rows import SparseRows


@dataclass(frozen=True)
class RowGradient:
    """The gradient of a ``(n_rows, width)`` weight, row by row, without the dense matrix:
    ``grad[j] = Σ_{k in colptr[j]:colptr[j+1]} coef[k] * source[src_rows[k]]``.

    ``colptr`` int64 ``(n_rows + 1,)``, ``src_rows`` int64 ``(nnz,)``, ``coef`` ``(nnz,)``,
    ``source`` ``(batch, width)``. For the first layer ``coef`` are the ratings and ``source``
    the gradient at its output; for the last layer ``coef`` is the gradient at each sampled
    output and ``source`` the last hidden layer.
    """

    colptr: torch.Tensor
    src_rows: torch.Tensor
    coef: torch.Tensor
    source: torch.Tensor

    def dense(self) -> torch.Tensor:
        """The gradient as a dense ``(n_rows, width)`` tensor (empty rows are zeros)."""
        return F.embedding_bag(
            self.src_rows, self.source, self.colptr, mode="sum",
            per_sample_weights=self.coef, include_last_offset=True,
        )


#: While :func:`deferring_row_gradients` is active: ``id(weight) → (weight, records)``.
_deferred: dict[int, tuple[torch.Tensor, list[RowGradient]]] | None = None


@contextmanager
def deferring_row_gradients(
    weights: Iterable[torch.Tensor],
) -> Iterator[dict[torch.Tensor, list[RowGradient]]]:
    """Within the block, backward passes through :func:`sparse_input_linear` and
    :func:`sampled_output_linear` record the gradients of ``weights`` as :class:`RowGradient`
    instead of accumulating them into ``.grad``. Yields ``{weight: [records]}`` (weights that
    received none are absent). Not re-entrant; gradients of other tensors are unaffected."""
    global _deferred
    if _deferred is not None:
        raise RuntimeError("deferring_row_gradients is already active")
    _deferred = {id(w): (w, []) for w in weights}
    try:
        collected: dict[torch.Tensor, list[RowGradient]] = {}
        yield collected
    finally:
        table, _deferred = _deferred, None
        collected.update({w: records for w, records in table.values() if records})


def _weight_gradient(weight: torch.Tensor, gradient: RowGradient) -> torch.Tensor | None:
    """What a backward returns for ``weight``: ``None`` when the gradient was deferred (recorded
    for the optimiser), else the dense gradient."""
    entry = None if _deferred is None else _deferred.get(id(weight))
    if entry is not None and entry[0] is weight:
        entry[1].append(gradient)
        return None
    return gradient.dense()


def _sampled_product(
    left: torch.Tensor, weight: torch.Tensor, targets: SparseRows, compiled: bool = False
) -> torch.Tensor:
    """``(left @ weight.T)[r, c]`` for each stored ``(r, c)`` of ``targets``, ``(nnz,)`` (SDDMM).

    In a CPU training step (``compiled``) a compiled loop
    (:func:`~aerec.model.kernels.sampled_dot_kernel`): for a batch of 128 Netflix users
    0.26 ms (0.56 ms with cold caches) against 0.32 ms (0.69 ms) for
    ``torch.sparse.sampled_addmm`` with its CSR mask, which everything else uses — inference
    runs in a server's thread pool, where PyTorch operators are the thread-safe choice."""
    if targets.nnz == 0:
        return left.new_zeros(0)
    if compiled and left.device.type == "cpu" and (
        left.dtype in (torch.float32, torch.float64) and weight.dtype == left.dtype
    ):
        out = torch.empty(targets.nnz, dtype=left.dtype)
        numba_threads()
        sampled_dot_kernel()(
            out.numpy(), as_numpy(left), as_numpy(weight), targets.indptr.numpy(),
            targets.indices.numpy(),
        )
        return out
    with warnings.catch_warnings():
        # torch announces that sparse CSR tensors are "beta"; the one CSR operation used
        # here (sampled_addmm) is covered by our equivalence tests, so that is noise.
        warnings.simplefilter("ignore", UserWarning)
        mask = torch.sparse_csr_tensor(
            targets.indptr, targets.indices,
            torch.ones(targets.nnz, dtype=left.dtype, device=left.device),
            size=(targets.batch_size, targets.n_columns), check_invariants=False,
        )
    return torch.sparse.sampled_addmm(mask, left, weight.t(), beta=0.0).values()


class _SampledOutputLinear(torch.autograd.Function):
    """``(H @ W.T)`` at the CSR positions of ``targets``, as a ``(nnz,)`` vector."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: SparseRows, compiled: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(hidden, weight)
        ctx.targets = targets
        ctx.weight = weight  # the parameter object itself: deferral looks it up by identity
        return _sampled_product(hidden, weight, targets, compiled)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        hidden, weight = ctx.saved_tensors
        targets: SparseRows = ctx.targets
        grad_hidden = grad_weight = None
        if targets.nnz == 0:
            return torch.zeros_like(hidden), torch.zeros_like(weight), None, None
        if ctx.needs_input_grad[0]:
            # dH[r] = sum over entries k of row r: grad_k * W[col_k]
            grad_hidden = F.embedding_bag(
                targets.indices, weight, targets.indptr, mode="sum",
                per_sample_weights=grad_out, include_last_offset=True,
            )
        if ctx.needs_input_grad[1]:
            # dW[m] = sum over entries k of movie m: grad_k * H[row_k]
            order, colptr = targets.column_order()
            grad_weight = _weight_gradient(
                ctx.weight, RowGradient(colptr, targets.rows[order], grad_out[order], hidden)
            )
        return grad_hidden, grad_weight, None, None


class _SparseInputLinear(torch.autograd.Function):
    """``X @ W`` for a sparse batch ``X`` (values = ``values``, structure = ``inputs``).

    Forward: ``embedding_bag`` sums the rated columns' weight rows, scaled by the values.
    Backward: the weight gradient ``X^T @ dY`` is another ``embedding_bag``, over the entries in
    column order (one bag per column, empty bags give the zero rows of the dense-layout
    gradient); the values' gradient (only when asked for) is ``dY @ W^T`` sampled at the stored
    positions. PyTorch's own ``embedding_bag`` backward computes the same weight gradient but
    through a sort and a zero-filled scatter: measured on CPU (batch 128, 4,499 movies, ~51
    ratings/user, 2 threads) 1.3 ms against 0.3 ms for this one.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, values: torch.Tensor, weight: torch.Tensor, inputs: SparseRows
    ) -> torch.Tensor:
        ctx.save_for_backward(values, weight)
        ctx.inputs = inputs
        ctx.weight = weight  # the parameter object itself: deferral looks it up by identity
        return F.embedding_bag(
            inputs.indices, weight, inputs.indptr, mode="sum",
            per_sample_weights=values, include_last_offset=True,
        )

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        values, weight = ctx.saved_tensors
        inputs: SparseRows = ctx.inputs
        grad_out = grad_out.contiguous()
        grad_values = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_values = _sampled_product(grad_out, weight, inputs)
        if ctx.needs_input_grad[1]:
            # dW[m] = sum over entries k of column m: value_k * dY[row_k]
            order, colptr = inputs.column_order()
            grad_weight = _weight_gradient(
                ctx.weight, RowGradient(colptr, inputs.rows[order], values[order], grad_out)
            )
        return grad_values, grad_weight, None


def sparse_input_linear(
    inputs: SparseRows, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """First layer on a sparse batch: ``X @ weight + bias``.

    ``inputs`` holds ``X`` ``(batch, n_movies)`` with ratings as values; ``weight`` is
    ``(n_movies, width)``, ``bias`` ``(width,)``. Returns ``(batch, width)``. A user with no
    ratings gets ``bias``.
    """
    if inputs.values is None:
        raise ValueError("the input batch needs values (ratings)")
    if inputs.nnz == 0:
        return bias.expand(inputs.batch_size, -1).clone()
    # Reads only the rated movies' rows; the backward returns the dense-layout weight gradient
    # (zero rows for movies nobody in the batch rated), see _SparseInputLinear.
    return _SparseInputLinear.apply(inputs.values.to(weight.dtype), weight, inputs) + bias


def sampled_output_linear(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, targets: SparseRows
) -> torch.Tensor:
    """Last layer's pre-activation only at the positions in ``targets``.

    ``hidden`` ``(batch, width)``, ``weight`` ``(n_movies, width)``, ``bias`` ``(n_movies,)``;
    ``targets`` gives, per batch row, the movie columns wanted. Returns ``(targets.nnz,)`` in the
    targets' CSR order: ``hidden[r] · weight[c] + bias[c]`` for each stored ``(r, c)``.
    """
    if targets.batch_size != hidden.shape[0]:
        raise ValueError(
            f"targets have {targets.batch_size} rows but the hidden batch has {hidden.shape[0]}"
        )
    # the compiled kernel for training steps (a graph being recorded), see _sampled_product
    compiled = torch.is_grad_enabled()
    return _SampledOutputLinear.apply(hidden, weight, targets, compiled) + bias.index_select(
        0, targets.indices
    )
