"""The item-based autoencoder (I-AutoRec): a movie's vector of user ratings in and out.

Training is the row-oriented network of :class:`~aerec.model.autoencoder.AutoEncoder` applied
to the transposed rating matrix: a row is a movie, its entries ``(user, rating)`` — the CSR of
``ratings.T`` — so it stays sparse exactly as the user-based model does. For a *training* user
``u`` the network predicts

    r̂_ui = g(V_u · h_i + c_u) [+ μ + b_i + b_u under centring]

where ``h_i`` (``widths[-1]`` wide) is movie ``i``'s last hidden layer computed from its
column of ratings, and ``(V_u, c_u)`` is user ``u``'s row of the output layer.

**Scoring a user from their ratings (fold-in).** The prediction API takes a user's ratings
only — the same ``predict_dense(indptr, indices, values)`` call as the user-based model — so a
new user (or a known one, from whatever ratings they bring) is scored without retraining:

1. the movie codes ``h_i`` are fixed, computed once from the training columns
   (:meth:`ItemAutoEncoder.prepare_inference`, stored in the checkpoint). A new user is an
   extra input coordinate whose first-layer weights are unknown; they are taken as zero, which
   is *exact* for every movie the user has not rated (a missing rating enters as 0, so that
   column's weights never touch those movies' codes) and only ignores the user's own echo in
   the codes of the movies they did rate;
2. the user's output row ``w = (V, c)`` is what training would give that user with everything
   else fixed: the minimiser of ``Σ_{i rated} (g(w · [h_i, 1]) − t_i)² + λ_f ‖w‖²``, where
   ``t_i`` is the rating (minus the baseline under centring) and ``λ_f`` the weight-decay
   penalty one decoder row carries in the training objective (``N · weight_decay / 2`` for N
   training ratings, refined on the validation split by the trainer). With an identity output
   this is one ridge regression per user (closed form, solved in the dual when the user has
   fewer ratings than the code is wide); otherwise a few Gauss–Newton steps;
3. under ``centring="biases"`` the user's bias is the same closed-form ridge update the bias
   fit uses: ``b_u = Σ (r_ui − μ − b_i) / (λ + n_u)``.

A *known* user — one the model was trained on, identified by their row — is better scored by
the output row training fitted for them: :meth:`ItemAutoEncoder.predict_known` (measured on
MovieLens 100K u1, refitted models: test RMSE 0.8951 by the trained rows against 0.8985 by
fold-in for the denoising model, 0.8968 against 0.8973 for plain I-AutoRec). Fold-in is what
serves a new user. The ``code`` of a user is ``w`` itself — the user's coordinates against the
movie codes — so similar users have similar codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from aerec.model.autoencoder import (
    ACTIVATIONS,
    AutoEncoder,
    AutoEncoderConfig,
    _eval_mode,
    iter_row_batches,
)
from aerec.model.base import register
from aerec.model.derived import derived
from aerec.model.leave_one_out import as_index, by_rows, downdated
from aerec.model.sparse_rows import SparseRows

#: Elements of the padded ``(users, ratings, code)`` block one fold-in chunk may hold.
FOLD_IN_BUDGET = 1 << 23
#: Gauss–Newton iterations of the fold-in for a non-identity output activation.
GAUSS_NEWTON_STEPS = 8


def _derivative(name: str, z: torch.Tensor) -> torch.Tensor:
    """``g'(z)`` of an output activation."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(ACTIVATIONS[name](z).sum(), z)
    return grad


@register("item-autoencoder", config=AutoEncoderConfig, model="autoencoder", priority=10,
          claims=lambda c: c.model == "autoencoder" and c.orientation == "item",
          summary="the item-based autoencoder (I-AutoRec), users scored by fold-in")
class ItemAutoEncoder(AutoEncoder):
    """Item-based autoencoder over ``n_movies`` movies and ``n_users`` training users.

    Rows are movies, columns users (``n_columns == n_users``); parameters as in
    :class:`AutoEncoder`, plus buffers for scoring users from their ratings:
    ``movie_codes`` ``(n_movies, widths[-1])``, ``movie_offsets`` ``(n_movies,)`` (``μ + b_i``
    under centring, else 0) and ``fold_in_l2`` ``()`` (the ridge penalty λ_f).
    """

    orientation = "item"

    def __init__(
        self,
        n_movies: int,
        n_users: int,
        layers: Sequence[int] = (500,),
        activation: str = "sigmoid",
        output_activation: str | None = "identity",
        dropout: float = 0.0,
        **options: object,
    ) -> None:
        super().__init__(
            n_movies, layers, activation, output_activation, dropout,
            n_columns=n_users, **options,  # type: ignore[arg-type]
        )
        self.n_users = int(n_users)
        dtype = self.dtype
        self.register_buffer("movie_codes", torch.zeros(n_movies, self.widths[-1], dtype=dtype))
        self.register_buffer("movie_offsets", torch.zeros(n_movies, dtype=dtype))
        self.register_buffer("fold_in_l2", torch.ones((), dtype=dtype))
        #: Users (columns) with training ratings: their trained output rows can score them.
        self.register_buffer("known_users", torch.zeros(n_users, dtype=torch.bool))

    def architecture(self) -> dict:
        arch = super().architecture()
        arch["n_users"] = self.n_users
        return arch

    @classmethod
    def from_architecture(cls, arch: dict, **kwargs: object) -> ItemAutoEncoder:
        """Rebuild an (untrained) item-based network from an ``architecture()`` dict."""
        return cls(int(arch["n_movies"]), int(arch["n_users"]), **cls._common(arch), **kwargs)

    # ------------------------------------------------------------------ inference state
    @torch.no_grad()
    def prepare_inference(
        self, rows: sp.csr_matrix, *, fold_in_l2: float | None = None, **_: object
    ) -> None:
        """Compute the movie codes from ``rows`` ``(n_movies, n_users)`` — each movie's
        column of training ratings — and set the fold-in penalty λ_f if given."""
        rows = sp.csr_matrix(rows)
        if rows.shape != (self.n_movies, self.n_users):
            raise ValueError(
                f"expected movie rows of shape {(self.n_movies, self.n_users)}, got {rows.shape}"
            )
        with _eval_mode(self):
            for start, block in iter_row_batches(rows):
                inputs = SparseRows.from_csr(block, dtype=self.dtype, device=self.device)
                network_input, offsets = self._network_input(inputs)
                hidden, _ = self._layers(network_input, None)
                stop = start + block.shape[0]
                self.movie_codes[start:stop] = hidden
                self.movie_offsets[start:stop] = 0.0 if offsets is None else offsets
        counts = np.bincount(rows.indices, minlength=self.n_users)
        self.known_users.copy_(torch.as_tensor(counts > 0, device=self.device))
        if fold_in_l2 is not None:
            self.set_fold_in_l2(fold_in_l2)

    def prepare_from_ratings(self, ratings: sp.csr_matrix, **options: object) -> None:
        """:meth:`prepare_inference` from ``(n_users, n_movies)`` ratings (transposed here)."""
        rows = sp.csr_matrix(ratings).T.tocsr()
        rows.sort_indices()
        self.prepare_inference(rows, **options)

    def set_fold_in_l2(self, value: float) -> None:
        """Set the ridge penalty λ_f of a folded-in user's output row."""
        if not value > 0:
            raise ValueError(f"fold_in_l2 must be > 0, got {value}")
        self.fold_in_l2.fill_(float(value))

    # ------------------------------------------------------------------ fold-in
    def _user_offsets(self, inputs: SparseRows) -> torch.Tensor:
        """Each user's bias ``b_u`` under ``centring="biases"`` (0 otherwise), ``(batch,)``."""
        if self.centring != "biases":
            return torch.zeros(inputs.batch_size, dtype=self.dtype, device=self.device)
        resid = inputs.values - self.movie_offsets.index_select(0, inputs.indices)
        sums = torch.zeros(inputs.batch_size, dtype=self.dtype, device=self.device)
        counts = torch.zeros_like(sums)
        sums.index_add_(0, inputs.rows, resid)
        counts.index_add_(0, inputs.rows, torch.ones_like(resid))
        return sums / (counts + self.bias_regularisation).clamp_min(1e-12)

    def _codes64(self) -> torch.Tensor:
        """The movie codes in float64 with a column of ones, ``(n_movies, widths[-1] + 1)`` —
        what fold-in regresses on — built once per change of ``movie_codes``."""
        return derived(self, "_codes64_cache", self.movie_codes, lambda: torch.cat([
            self.movie_codes.detach().double(),
            torch.ones(self.n_movies, 1, dtype=torch.float64, device=self.device),
        ], dim=1))

    @torch.no_grad()
    def fold_in(self, inputs: SparseRows) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w (batch, widths[-1] + 1) float64, b_u (batch,))`` for users given as ratings.

        ``inputs`` ``(batch, n_movies)``: each user's (movie, rating) list. ``w`` is the user's
        output row and bias (see the module docstring); users without ratings get zeros.
        """
        codes = self._codes64()
        width = codes.shape[1]
        user_offsets = self._user_offsets(inputs)
        targets = (
            inputs.values.double()
            - self.movie_offsets.double().index_select(0, inputs.indices)
            - user_offsets.double().index_select(0, inputs.rows)
        )
        weights = torch.zeros(inputs.batch_size, width, dtype=torch.float64, device=self.device)
        counts = (inputs.indptr[1:] - inputs.indptr[:-1]).cpu().numpy()
        lam = float(self.fold_in_l2)
        for users in _chunks(counts, width):
            weights[users] = self._solve_chunk(inputs, users, counts, codes, targets, lam)
        return weights, user_offsets

    def _solve_chunk(
        self, inputs: SparseRows, users: np.ndarray, counts: np.ndarray, codes: torch.Tensor,
        targets: torch.Tensor, lam: float,
    ) -> torch.Tensor:
        """Output rows of ``users`` (all with ≥ 1 rating), ``(len(users), width)``."""
        device = self.device
        n = counts[users]
        length = int(n.max())
        starts = inputs.indptr.cpu().numpy()[users]
        offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
        total = int(n.sum())
        position = np.arange(total) - np.repeat(offsets, n)
        entry = torch.as_tensor(np.repeat(starts, n) + position, device=device)
        row = torch.as_tensor(np.repeat(np.arange(len(users)), n), device=device)
        position_t = torch.as_tensor(position, device=device)
        a = torch.zeros(len(users), length, codes.shape[1], dtype=torch.float64, device=device)
        a[row, position_t] = codes.index_select(0, inputs.indices[entry])
        y = torch.zeros(len(users), length, dtype=torch.float64, device=device)
        y[row, position_t] = targets[entry]
        if self.output_activation == "identity":
            return _ridge(a, y, lam)
        observed = torch.zeros_like(y)
        observed[row, position_t] = 1.0
        w = torch.zeros(len(users), codes.shape[1], dtype=torch.float64, device=device)
        g = ACTIVATIONS[self.output_activation]
        for _ in range(GAUSS_NEWTON_STEPS):  # linearise g around the current fit, re-solve
            z = torch.einsum("blk,bk->bl", a, w)
            d = _derivative(self.output_activation, z) * observed
            w = _ridge(a * d[..., None], (y - g(z) + d * z) * observed, lam)
        return w

    def _scores(self, w: torch.Tensor, user_offsets: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of every movie, ``(batch, n_movies)``."""
        z = torch.addmm(w[:, -1:], w[:, :-1], self._codes64()[:, :-1].t())
        out = ACTIVATIONS[self.output_activation](z).to(self.dtype)
        return out + self.movie_offsets + user_offsets[:, None]

    # ------------------------------------------------------------------ prediction API
    @torch.no_grad()
    def code_and_predict(
        self, indptr: object, indices: object, values: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes (batch, widths[-1] + 1), predictions (batch, n_movies))`` for users given
        by their ratings (CSR arrays over movies, as in :meth:`predict_dense`).

        The code is the user's folded-in output row ``(V, c)``; predictions are clamped to the
        scale when the model has ``clip``. Memory is ``batch × n_movies`` floats.
        """
        inputs = self._inputs(indptr, indices, values)
        w, user_offsets = self.fold_in(inputs)
        return w.to(self.dtype), self._clip(self._scores(w, user_offsets))

    @torch.no_grad()
    def predict_known(
        self, user_rows: object, indptr: object, indices: object, values: object
    ) -> torch.Tensor:
        """Predicted ratings ``(batch, n_movies)`` for users identified by their row in the
        training data (``user_rows`` ``(batch,)``) as well as by their ratings.

        A user the model was trained on is scored by their *trained* output row — what
        training fitted for them (``g(V_u · h_i + c_u)``, plus ``μ + b_i + b_u`` under
        centring); the ratings passed are then not used. Any other user (a row out of range or
        without training ratings) is folded in from their ratings as in :meth:`predict_dense`.
        """
        users = torch.as_tensor(np.asarray(user_rows), dtype=torch.int64, device=self.device)
        inside = (users >= 0) & (users < self.n_users)
        known = torch.zeros_like(inside)
        known[inside] = self.known_users[users[inside]]
        out = self.predict_dense(indptr, indices, values) if not bool(known.all()) else None
        if bool(known.any()):
            rows = users[known]
            weight = self.decoder_weight.index_select(0, rows)
            z = torch.addmm(self.output_bias.index_select(0, rows)[:, None], weight,
                            self.movie_codes.t())
            trained = ACTIVATIONS[self.output_activation](z) + self.movie_offsets
            if self.centring == "biases":
                trained = trained + self.column_bias.index_select(0, rows)[:, None]
            trained = self._clip(trained)
            if out is None:
                return trained
            out[known] = trained.to(out.dtype)
        return out

    @torch.no_grad()
    def predict_at(
        self, indptr: object, indices: object, values: object, rows: object, cols: object
    ) -> torch.Tensor:
        """Predicted ratings at ``(rows[j], cols[j])`` positions, ``(k,)`` (see
        :meth:`AutoEncoder.predict_at`); costs O(k × width) after the fold-in."""
        inputs = self._inputs(indptr, indices, values)
        rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.int64, device=self.device)
        cols_t = torch.as_tensor(np.asarray(cols), dtype=torch.int64, device=self.device)
        if rows_t.numel() and (int(rows_t.min()) < 0 or int(rows_t.max()) >= inputs.batch_size):
            raise IndexError(f"row index out of range for a batch of {inputs.batch_size} rows")
        if cols_t.numel() and (int(cols_t.min()) < 0 or int(cols_t.max()) >= self.n_movies):
            raise IndexError(f"column index out of range for {self.n_movies} movies")
        w, user_offsets = self.fold_in(inputs)
        w_rows = w.index_select(0, rows_t)
        z = (w_rows[:, :-1] * self._codes64().index_select(0, cols_t)[:, :-1]).sum(1)
        z = z + w_rows[:, -1]
        out = ACTIVATIONS[self.output_activation](z).to(self.dtype)
        out = out + self.movie_offsets.index_select(0, cols_t) + user_offsets[rows_t]
        return self._clip(out)

    @torch.no_grad()
    def leave_one_out_at(
        self, columns: np.ndarray, ratings: np.ndarray, tested: np.ndarray, targets: np.ndarray
    ) -> torch.Tensor:
        """Predictions at ``targets`` for one user with every rating (row 0) and without each
        ``tested`` rating (rows 1 …), ``(m + 1, k)`` — see :mod:`aerec.model.leave_one_out`.
        With an identity output and no bias centring the fold-in is one ridge regression, so
        leaving a rating out is an exact rank-one downdate of it; otherwise each row is folded
        in anew."""
        if self.output_activation != "identity" or self.centring == "biases" or not len(columns):
            return by_rows(self, columns, ratings, tested, targets)
        codes = self._codes64()
        cols = as_index(columns, self.device)
        wanted = as_index(targets, self.device)
        offsets = self.movie_offsets.double()
        a = codes.index_select(0, cols)
        y = torch.as_tensor(np.asarray(ratings, dtype=np.float64), device=self.device)
        y = y - offsets.index_select(0, cols)
        gram = a.t() @ a
        gram.diagonal().add_(float(self.fold_in_l2))
        factor = torch.linalg.cholesky(gram)
        w = torch.cholesky_solve((a.t() @ y)[:, None], factor)[:, 0]
        out = downdated(
            a[None], y[None], factor[None], w[None],
            as_index(tested, self.device),
            codes.index_select(0, wanted)[None],
        )[0]
        return self._clip((out + offsets.index_select(0, wanted)).to(self.dtype))


def _ridge(a: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Batched ridge regression: ``argmin_w ‖a w − y‖² + λ‖w‖²`` per batch entry.

    ``a`` ``(b, L, k)`` (zero rows are padding), ``y`` ``(b, L)``; returns ``(b, k)``. Solved in
    the dual ``w = aᵀ (a aᵀ + λI)⁻¹ y`` when ``L < k`` (cheaper for short rating lists),
    otherwise the primal ``(aᵀa + λI)⁻¹ aᵀ y``; both by Cholesky.
    """
    b, length, width = a.shape
    if length < width:
        gram = torch.bmm(a, a.transpose(1, 2))
        gram.diagonal(dim1=1, dim2=2).add_(lam)
        alpha = torch.cholesky_solve(y[..., None], torch.linalg.cholesky(gram))
        return torch.bmm(a.transpose(1, 2), alpha)[..., 0]
    gram = torch.bmm(a.transpose(1, 2), a)
    gram.diagonal(dim1=1, dim2=2).add_(lam)
    rhs = torch.bmm(a.transpose(1, 2), y[..., None])
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(gram))[..., 0]


def _chunks(counts: np.ndarray, width: int) -> list[np.ndarray]:
    """Users with ≥ 1 rating grouped (by similar count, so little padding) into chunks whose
    padded ``(users, ratings, width)`` block fits :data:`FOLD_IN_BUDGET`."""
    users = np.flatnonzero(counts > 0)
    users = users[np.argsort(counts[users], kind="stable")]
    chunks, start = [], 0
    while start < len(users):
        longest = int(counts[users[start]])
        stop = start + 1
        while stop < len(users):
            longest = int(counts[users[stop]])
            if (stop + 1 - start) * longest * width > FOLD_IN_BUDGET:
                break
            stop += 1
        chunks.append(users[start:stop])
        start = stop
    return chunks
