"""A bounded batch of sparse rating rows (rows = users, columns = movies) as torch tensors.

The autoencoder never sees a dense users × movies matrix: a batch is the CSR slice of the
users it holds, i.e. for each user the list of (movie index, rating) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch


def _as_tensor(
    values: object, dtype: torch.dtype, device: torch.device | str | None
) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=dtype)
    array = np.asarray(values)
    if not array.flags.writeable:  # e.g. memory-mapped: torch cannot share read-only memory
        array = array.copy()
    return torch.as_tensor(array, dtype=dtype, device=device)


@dataclass
class SparseRows:
    """Rows of a sparse matrix in CSR form.

    ``indptr`` int64 ``(batch + 1,)``, ``indices`` int64 ``(nnz,)`` (column = movie index of
    each entry), ``values`` float ``(nnz,)`` (the ratings; may be ``None`` for a pure structure,
    e.g. the positions at which outputs are wanted). ``n_columns`` is the number of movies.
    Entries of a row are contiguous (``indptr[i]:indptr[i+1]``); within a row any order works.
    """

    indptr: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor | None
    n_columns: int
    #: Row (batch position) of each entry, int64 ``(nnz,)``.
    rows: torch.Tensor = field(init=False)
    #: Derived structure (the column order), shared by :meth:`with_values` copies.
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        counts = self.indptr[1:] - self.indptr[:-1]
        if self.indptr.device.type == "cpu":  # NumPy's repeat: ~10× faster than torch's on CPU
            self.rows = torch.from_numpy(
                np.repeat(np.arange(len(counts), dtype=np.int64), counts.numpy())
            )
        else:
            self.rows = torch.repeat_interleave(
                torch.arange(len(counts), device=self.indptr.device), counts
            )

    @property
    def batch_size(self) -> int:
        """Number of rows."""
        return int(self.indptr.shape[0]) - 1

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.indices.shape[0])

    @classmethod
    def from_arrays(
        cls,
        indptr: object,
        indices: object,
        values: object | None,
        n_columns: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> SparseRows:
        """Build from CSR arrays (NumPy or torch); copies only where dtype/device differ."""
        return cls(
            _as_tensor(indptr, torch.int64, device),
            _as_tensor(indices, torch.int64, device),
            None if values is None else _as_tensor(values, dtype, device),
            int(n_columns),
        )

    @classmethod
    def from_csr(
        cls,
        matrix: sp.csr_matrix,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> SparseRows:
        """Build from a SciPy CSR matrix ``(batch, n_movies)``; stored entries are the ratings."""
        return cls.from_arrays(
            matrix.indptr, matrix.indices, matrix.data, matrix.shape[1], dtype=dtype, device=device
        )

    @classmethod
    def from_positions(
        cls, rows: object, cols: object, batch_size: int, n_columns: int,
        device: torch.device | str | None = None,
    ) -> tuple[SparseRows, torch.Tensor]:
        """Group arbitrary ``(rows[k], cols[k])`` positions into CSR structure (no values).

        Returns the structure and ``order`` (int64 ``(k,)``): entry ``j`` of the structure is
        position ``order[j]`` of the input, so ``out[order] = structure_outputs`` restores the
        caller's order.
        """
        rows_t = _as_tensor(rows, torch.int64, device)
        cols_t = _as_tensor(cols, torch.int64, device)
        if rows_t.numel() and (int(rows_t.min()) < 0 or int(rows_t.max()) >= batch_size):
            raise IndexError(f"row index out of range for a batch of {batch_size} rows")
        if cols_t.numel() and (int(cols_t.min()) < 0 or int(cols_t.max()) >= n_columns):
            raise IndexError(f"column index out of range for {n_columns} movies")
        order = torch.sort(rows_t, stable=True).indices
        counts = torch.bincount(rows_t, minlength=batch_size)
        indptr = torch.zeros(batch_size + 1, dtype=torch.int64, device=rows_t.device)
        torch.cumsum(counts, 0, out=indptr[1:])
        return cls(indptr, cols_t[order], None, n_columns), order

    def with_values(self, values: torch.Tensor | None) -> SparseRows:
        """The same structure with other values ``(nnz,)`` (row and column indexes are
        shared, not recomputed)."""
        if values is not None and values.shape != self.indices.shape:
            raise ValueError(f"{values.shape[0]} values for {self.nnz} stored entries")
        out = object.__new__(SparseRows)
        out.indptr, out.indices, out.values, out.n_columns = (
            self.indptr, self.indices, values, self.n_columns
        )
        out.rows = self.rows
        out._cache = self._cache
        return out

    @classmethod
    def dense(cls, block: torch.Tensor) -> SparseRows:
        """Every entry of a bounded dense block ``(batch, n_columns)`` stored explicitly (dense
        re-feeding feeds a full reconstruction back as input)."""
        batch, n_columns = block.shape
        device = block.device
        indptr = torch.arange(batch + 1, dtype=torch.int64, device=device) * n_columns
        indices = torch.arange(n_columns, dtype=torch.int64, device=device).repeat(batch)
        return cls(indptr, indices, block.reshape(-1), n_columns)

    def column_order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The transposed (column-grouped) view, computed once and cached.

        Returns ``(order, colptr)``: ``order`` int64 ``(nnz,)`` lists the entries sorted by
        column (stable), ``colptr`` int64 ``(n_columns + 1,)`` delimits each column's entries in
        that order. Used by the backward passes to accumulate weight gradients per movie.
        """
        if "column_order" not in self._cache:
            if self.indices.device.type == "cpu":
                # NumPy's stable sort is ~10× faster than torch's on CPU (radix sort when the
                # columns fit 16 bits); the order is the same — a stable sort is unique.
                keys = self.indices.numpy()
                if self.n_columns <= np.iinfo(np.uint16).max:
                    keys = keys.astype(np.uint16)
                order = torch.from_numpy(np.argsort(keys, kind="stable").astype(np.int64))
            else:
                order = torch.sort(self.indices, stable=True).indices
            counts = torch.bincount(self.indices, minlength=self.n_columns)
            colptr = torch.zeros(self.n_columns + 1, dtype=torch.int64, device=counts.device)
            torch.cumsum(counts, 0, out=colptr[1:])
            self._cache["column_order"] = (order, colptr)
        return self._cache["column_order"]

    def to_dense(self) -> torch.Tensor:
        """Dense ``(batch, n_columns)`` copy (zeros where nothing is stored). Small batches only."""
        dense = torch.zeros(
            self.batch_size, self.n_columns,
            dtype=self.values.dtype if self.values is not None else torch.float32,
            device=self.indptr.device,
        )
        dense[self.rows, self.indices] = self.values if self.values is not None else 1.0
        return dense
