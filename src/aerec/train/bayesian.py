"""Training a Bayesian factorisation (``model = "bayesian-mf"``) by Gibbs sampling.

Each *epoch* is one sweep of the sampler of Salakhutdinov & Mnih (2008): draw the user prior's
mean and precision from their Normal–Wishart posterior, every user vector from its Gaussian
conditional given the movie vectors, then the same for movies. The conditionals are drawn in
one compiled pass over the CSR rows (:func:`aerec.model.kernels.gaussian_rows_kernel`), with the
standard-normal noise drawn beforehand from the run's seeded generator, so a run is
reproducible whatever the thread count. With robust noise (``noise_scales = a₀ > 0``,
Lakshminarayanan, Bouchard & Archambeau 2011) each sweep also draws every user's and every
movie's noise-precision scale from its Gamma conditional; a rating then counts with precision
``α γ_user γ_movie`` in the next sweep's conditionals.

After ``burn_in`` sweeps the samples' predictions at the validation ratings are averaged, and
that running posterior mean's RMSE is the epoch's validation RMSE: early stopping (``patience``)
and the selected epoch use it, never the test split. Posterior samples are kept evenly thinned
(``kept_samples`` of them) and become the model (:class:`~aerec.model.bayesian_mf.BayesianMF`);
with ``refit`` a fresh chain then runs the selected number of sweeps on training + validation
ratings.

The run directory is written when the run ends (sweeps take seconds on MovieLens data); an
interrupted run leaves nothing half-written and starts over.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
import scipy.sparse as sp
import torch

from aerec.config import TrainConfig
from aerec.metrics import clipped_rmse
from aerec.model.base import RatingModel
from aerec.model.bayesian_mf import BayesianMF
from aerec.model.kernels import (
    gaussian_rows_kernel,
    numba_threads,
    sampled_dot_kernel,
    sparse_dense_kernel,
)
from aerec.system import serial_blas
from aerec.train.budget import Deadline, EpochClock
from aerec.train.loop import Family, Refit, RunContext
from aerec.train.memory import bayesian_memory
from aerec.train.metrics_log import EpochMetrics

#: Normal–Wishart hyperprior: β₀ (prior mean's strength); ν₀ = d and W₀ = I, μ₀ = 0.
PRIOR_STRENGTH = 2.0
#: Conjugate-gradient steps per sweep for the audience prior's weights (warm-started from the
#: previous sweep's draw: on MovieLens 100K 5 and 20 steps give the same validation RMSE).
AUDIENCE_CG_STEPS = 5


class GibbsSampler:
    """The state of one chain over a CSR ``(n_users, n_movies)`` rating matrix."""

    def __init__(self, ratings: sp.csr_matrix, factors: int, noise_precision: float,
                 seed: int, noise_scales: float = 0.0, audience_prior: bool = False,
                 init_scale: float = 0.1, device: str = "cpu") -> None:
        ratings = ratings.tocsr()
        self.rng = np.random.default_rng(seed)
        self.factors, self.alpha = int(factors), float(noise_precision)
        self.noise_scales = float(noise_scales)
        self.mean = float(ratings.data.mean()) if ratings.nnz else 0.0
        self.by_user = _arrays(ratings, self.mean)
        self.by_movie = _arrays(ratings.T.tocsr(), self.mean)
        n_users, n_movies = ratings.shape
        self.users = init_scale * self.rng.standard_normal((n_users, self.factors))
        self.movies = init_scale * self.rng.standard_normal((n_movies, self.factors))
        self.user_prior = (np.zeros(self.factors), np.eye(self.factors))
        # on a GPU the row draws run as batched PyTorch operations (aerec.train.gibbs_torch);
        # the noise still comes from this NumPy generator, so a chain is the same draw for draw
        self._torch_rows = None
        if torch.device(device).type != "cpu":
            from aerec.train.gibbs_torch import TorchRows

            dev = torch.device(device)
            self._torch_rows = {id(arrays): TorchRows(*arrays, dev)
                                for arrays in (self.by_user, self.by_movie)}
        self._user_counts = np.diff(self.by_user[0])
        self._movie_counts = np.diff(self.by_movie[0])
        # per-user and per-movie noise-precision scales (all 1 without ``noise_scales``), and
        # each rating's weight γ_user γ_movie in by-user and in by-movie order
        self.user_scale, self.movie_scale = np.ones(n_users), np.ones(n_movies)
        # int32 where it fits: on all of Netflix every per-rating int64 array is 0.6 GB
        index_type = np.int32 if max(ratings.shape) < 2**31 else np.int64
        self._user_of = np.repeat(np.arange(n_users, dtype=index_type), self._user_counts)
        self._movie_of = self.by_user[1]
        self._weights = self._movie_weights = np.ones(ratings.nnz)
        if self.noise_scales > 0:
            # the by-movie position of each rating: entry k of ``by_movie`` is CSR entry
            # order[k]
            position = sp.csr_matrix(
                (np.arange(1, ratings.nnz + 1, dtype=np.int64), ratings.indices,
                 ratings.indptr), shape=ratings.shape,
            )
            order_type = np.int32 if ratings.nnz < 2**31 else np.int64
            self._movie_order = (position.T.tocsr().data - 1).astype(order_type)
            del position
        # the movies' audience prior: Z (movies × users), z_m = who rated m / √n_m
        self.audience = None
        if audience_prior:
            counts = self._movie_counts
            self.audience = sp.csr_matrix(
                (np.repeat(1 / np.sqrt(np.maximum(counts, 1)), counts), self.by_movie[1],
                 self.by_movie[0]), shape=(n_movies, n_users),
            )
            self.audience_t = self.audience.T.tocsr()
            for m in (self.audience, self.audience_t):  # the kernel's index type
                m.indptr, m.indices = m.indptr.astype(np.int64), m.indices.astype(np.int64)
            self.audience_vectors = np.zeros((n_users, self.factors))
            self.audience_precision = 1.0

    def sweep(self) -> None:
        """One Gibbs sweep: user hyperparameters, users, movie hyperparameters, movies, then
        (with ``noise_scales``) the users' and movies' noise-precision scales — NumPy's BLAS
        on one thread, so that its idle threads do not spin against Numba's kernels."""
        with serial_blas():
            self._sweep()

    def _sweep(self) -> None:
        numba_threads()
        draw = gaussian_rows_kernel()
        self.user_prior = self._hyperparameters(self.users)
        self._draw(draw, self.users, self.by_user, self._weights, self.movies, *self.user_prior)
        offset = (0.0 if self.audience is None
                  else _sparse_times(self.audience, self.audience_vectors))
        mean, precision = self._hyperparameters(self.movies - offset)
        self._draw(draw, self.movies, self.by_movie, self._movie_weights, self.users,
                   mean + offset, precision)
        if self.audience is not None:
            self._draw_audience(mean, precision)
        if self.noise_scales > 0:
            self._draw_scales()

    def _draw(self, draw, out, arrays, weights, other, mean, precision) -> None:
        """Draw every row of ``out`` from its conditional; ``mean`` is the prior mean, one
        vector for all rows or one per row."""
        noise = self.rng.standard_normal(out.shape)
        indptr, indices, values = arrays
        shift = np.broadcast_to(_times(mean, precision.T), out.shape)
        if self._torch_rows is not None:
            self._torch_rows[id(arrays)].draw(out, weights, other, precision, shift, self.alpha,
                                              noise)
            return
        draw(out, indptr, indices, values, weights, other, precision, shift, self.alpha, noise)

    def _draw_audience(self, mean: np.ndarray, precision: np.ndarray) -> None:
        """The audience prior's weights ``Γ`` (users × d) and precision ``λ``. Movie ``m``'s
        prior mean is ``μ + Σ_u Γ_u / √n_m`` over the ``n_m`` users who rated it, i.e. the
        movies' prior means are ``μ + Z Γ``; so ``V − μ = Z Γ + E`` with rows of ``E`` ~
        N(0, Λ⁻¹), and ``Γ`` has the matrix-normal prior MN(0, λ⁻¹ I, Λ⁻¹). Its conditional
        is drawn by perturbing the normal equations (Macau, Simm et al. 2015):
        ``(ZᵀZ + λ I) Γ = Zᵀ (V − μ + E₁) + √λ E₂`` with ``E₁, E₂`` rows ~ N(0, Λ⁻¹), solved
        by :data:`AUDIENCE_CG_STEPS` conjugate-gradient steps from the last draw (no
        users × users matrix is formed). Then ``λ`` from its Gamma(1, 1)-prior conditional."""
        z, zt, lam = self.audience, self.audience_t, self.audience_precision
        cov = np.linalg.cholesky(np.linalg.inv(precision))
        e1 = _times(self.rng.standard_normal(self.movies.shape), cov.T)
        e2 = _times(self.rng.standard_normal(self.audience_vectors.shape), cov.T)
        rhs = _sparse_times(zt, self.movies - mean + e1) + math.sqrt(lam) * e2
        self.audience_vectors = conjugate_gradient(
            lambda g: _sparse_times(zt, _sparse_times(z, g)) + lam * g, rhs,
            self.audience_vectors, AUDIENCE_CG_STEPS,
        )
        g = self.audience_vectors
        self.audience_precision = self.rng.gamma(
            1 + g.size / 2, 1 / (1 + 0.5 * float(np.sum(_times(g, precision) * g)))
        )

    def _draw_scales(self) -> None:
        """The scales' Gamma conditionals: prior Gamma(a₀, rate a₀) (mean 1), and each of a
        user's ``n`` ratings with error ``e`` adds ½ to the shape and ``α γ_m e² / 2`` to the
        rate (``γ_m`` the movie's scale); then the same for movies given the users' scales."""
        a0 = self.noise_scales
        error = self.alpha * (self._dots(*self.by_user[:2]) - self.by_user[2]) ** 2
        users, movies = self._user_of, self._movie_of
        n_users, n_movies = len(self.user_scale), len(self.movie_scale)
        rate = a0 + np.bincount(users, error * self.movie_scale[movies], n_users) / 2
        self.user_scale = self.rng.gamma(a0 + self._user_counts / 2, 1 / rate)
        rate = a0 + np.bincount(movies, error * self.user_scale[users], n_movies) / 2
        self.movie_scale = self.rng.gamma(a0 + self._movie_counts / 2, 1 / rate)
        self._weights = self.user_scale[users] * self.movie_scale[movies]
        self._movie_weights = self._weights[self._movie_order]

    def fit_errors(self, clip: tuple[float, float], chunk: int = 1 << 22) -> tuple[float, float]:
        """This sample's (MSE, clipped RMSE) on its own training ratings, a bounded chunk of
        users at a time (no per-rating array of the whole matrix is held); BLAS on one thread
        as in :meth:`sweep`."""
        with serial_blas():
            return self._fit_errors(clip, chunk)

    def _fit_errors(self, clip: tuple[float, float], chunk: int) -> tuple[float, float]:
        indptr, indices, values = self.by_user
        squared = clipped = 0.0
        start, n = 0, len(indptr) - 1
        while start < n:
            end = int(np.searchsorted(indptr, indptr[start] + chunk, "right")) - 1
            end = min(max(end, start + 1), n)
            a, b = int(indptr[start]), int(indptr[end])
            dots = np.empty(b - a)
            if b > a:
                sampled_dot_kernel()(dots, self.users[start:end], self.movies,
                                     indptr[start:end + 1] - a, indices[a:b])
            truth = values[a:b]  # centred ratings: prediction - truth = dots - truth
            squared += float(np.dot(dots - truth, dots - truth))
            error = np.clip(dots + self.mean, *clip) - (truth + self.mean)
            clipped += float(np.dot(error, error))
            start = end
        count = max(len(values), 1)
        return squared / count, math.sqrt(clipped / count)

    def _dots(self, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``u_r · v_c`` at each entry of a CSR pattern over (users, movies)."""
        out = np.empty(len(indices))
        if len(indices):
            sampled_dot_kernel()(out, self.users, self.movies, indptr, indices)
        return out

    def _hyperparameters(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A draw of (mean, precision) from the Normal–Wishart posterior given the rows ``x``."""
        n, d = x.shape
        xbar = x.mean(0)
        centred = x - xbar
        scatter = centred.T @ centred
        beta, dof = PRIOR_STRENGTH + n, d + n
        w_inv = np.eye(d) + scatter + PRIOR_STRENGTH * n / beta * np.outer(xbar, xbar)
        w = np.linalg.inv(w_inv)
        precision = _wishart(self.rng, (w + w.T) / 2, dof)
        cov = np.linalg.inv(beta * precision)
        mean = n * xbar / beta + np.linalg.cholesky((cov + cov.T) / 2) @ self.rng.standard_normal(d)
        return mean, precision

    def predict(self, positions: sp.csr_matrix) -> np.ndarray:
        """This sample's raw predictions at a CSR matrix's entries (CSR order)."""
        return self._dots(positions.indptr.astype(np.int64),
                          positions.indices.astype(np.int64)) + self.mean

    def sample(self) -> tuple[np.ndarray, ...]:
        """What the model keeps of this sample: movie vectors, user prior mean and precision,
        and the movies' noise-precision scales."""
        return (self.movies.copy(), self.user_prior[0].copy(), self.user_prior[1].copy(),
                self.movie_scale.copy())


def _times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a tall ``a`` and a d × d ``b`` without BLAS: NumPy's BLAS would start its
    own threads, which then spin against the compiled kernels' threads (measured: a sweep
    47 ms with ``@`` against 30 ms with this on MovieLens 100K, 2 cores)."""
    return np.einsum("...j,jk->...k", a, b)


def _sparse_times(matrix: sp.csr_matrix, dense: np.ndarray) -> np.ndarray:
    """``matrix @ dense`` (CSR with int64 indices, float64 values) on all threads,
    bit-identical to SciPy's single-threaded product."""
    out = np.empty((matrix.shape[0], dense.shape[1]))
    sparse_dense_kernel()(out, matrix.indptr, matrix.indices, matrix.data,
                          np.ascontiguousarray(dense))
    return out


def conjugate_gradient(apply, rhs: np.ndarray, start: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` conjugate-gradient steps on ``apply(X) = rhs`` (a symmetric positive-definite
    operator on ``(n, k)`` arrays), one independent solve per column, from ``start``."""
    x = start.copy()
    r = rhs - apply(x)
    p = r.copy()
    rr = np.einsum("ij,ij->j", r, r)
    for _ in range(steps):
        if not rr.any():
            break
        ap = apply(p)
        step = rr / np.maximum(np.einsum("ij,ij->j", p, ap), np.finfo(float).tiny)
        x += p * step
        r -= ap * step
        new = np.einsum("ij,ij->j", r, r)
        p = r + p * (new / np.maximum(rr, np.finfo(float).tiny))
        rr = new
    return x


def _arrays(m: sp.csr_matrix, mean: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr int64, indices, centred float64 values)``; indices stay int32 when they fit
    (the compiled kernels take either), which saves 0.6 GB a side on all of Netflix."""
    index_type = np.int32 if m.shape[1] < 2**31 else np.int64
    return (m.indptr.astype(np.int64), m.indices.astype(index_type),
            m.data.astype(np.float64) - mean)


def _wishart(rng: np.random.Generator, scale: np.ndarray, dof: float) -> np.ndarray:
    """One draw from Wishart(scale, dof) (Bartlett decomposition)."""
    d = scale.shape[0]
    a = np.tril(rng.standard_normal((d, d)), -1)
    a[np.diag_indices(d)] = np.sqrt(rng.chisquare(dof - np.arange(d)))
    la = np.linalg.cholesky(scale) @ a
    return la @ la.T


def thinning(config: TrainConfig, sweeps: int | None = None, burn_in: int | None = None) -> int:
    """Keep every this many sweeps after the burn-in (``kept_samples`` over the ``sweeps``
    planned, by default ``config.epochs``)."""
    sweeps = config.epochs if sweeps is None else sweeps
    burn_in = config.burn_in if burn_in is None else burn_in
    return max(1, math.ceil((sweeps - burn_in) / config.kept_samples))


class Chain:
    """One Gibbs chain stepped a sweep at a time: the sampler, the burn-in and thinning, the
    kept samples and the running posterior mean at the validation ratings.

    Under a deadline the chain is planned after its first sweep (:meth:`plan`): the sweeps
    that fit decide the burn-in (at most a fifth of them, never more than ``config.burn_in``)
    and the thinning, so ``kept_samples`` samples are spread over the sweeps the budget
    allows."""

    def __init__(self, config: TrainConfig, train: sp.csr_matrix,
                 validation: sp.csr_matrix | None, sweeps: int, clip: tuple[float, float],
                 device: torch.device | str = "cpu") -> None:
        self.config, self.sweeps, self.clip = config, sweeps, clip
        self.sampler = GibbsSampler(train, config.factors, config.noise_precision, config.seed,
                                    config.noise_scales, config.audience_prior,
                                    config.init_scale, device=str(device))
        self.validation = validation if validation is not None and validation.nnz else None
        self.truth = (self.validation.data.astype(np.float64)
                      if self.validation is not None else None)
        self.burn_in, self.thin = config.burn_in, thinning(config, sweeps)
        self.kept: deque = deque(maxlen=config.kept_samples)
        self.running, self.averaged = None, 0
        self.sweep, self.sampled = 0, False

    def plan(self, clock: EpochClock) -> None:
        """Before sweep 2 under a deadline: burn-in and thinning from the sweeps that fit."""
        if self.sweep == 1 and clock.deadline.limited:
            planned = min(self.sweeps, 1 + clock.affordable(self.sweeps))
            self.burn_in = min(self.config.burn_in, max(1, planned // 5))
            self.thin = thinning(self.config, planned, self.burn_in)

    def step(self) -> tuple[float, float]:
        """One sweep; keeps the sample when it is due. Returns the sample's training
        ``(MSE, clipped RMSE)``."""
        self.sampler.sweep()
        self.sweep += 1
        fit = self.sampler.fit_errors(self.clip)
        self.sampled = self.sweep > self.burn_in
        if self.sampled and (self.sweep - self.burn_in - 1) % self.thin == 0:
            self.kept.append(self.sampler.sample())
        return fit

    def validate(self) -> tuple[float, float]:
        """``(MSE, clipped RMSE)`` at the validation ratings of the running posterior mean
        (of this sample alone during the burn-in); NaN without validation ratings."""
        if self.validation is None:
            return math.nan, math.nan
        predicted = self.sampler.predict(self.validation)
        if self.sampled:
            self.running = predicted if self.running is None else self.running + predicted
            self.averaged += 1
            predicted = self.running / self.averaged
        return (float(np.mean((predicted - self.truth) ** 2)),
                clipped_rmse(predicted, self.truth, self.clip))

    def samples(self) -> list:
        """The kept samples (the current state when none is kept yet)."""
        return list(self.kept) or [self.sampler.sample()]


def model_from_samples(
    samples: list, global_mean: float, config: TrainConfig, n_movies: int,
    clip: tuple[float, float],
) -> BayesianMF:
    """A :class:`BayesianMF` holding ``samples`` (from :meth:`GibbsSampler.sample`)."""
    model = BayesianMF(n_movies, config.factors, len(samples),
                       clip=clip if config.clip_predictions else None)
    movies, means, precisions, scales = (np.stack(part) for part in zip(*samples))
    model.set_samples(movies, means, precisions, global_mean, config.noise_precision, scales)
    return model.eval()


class BayesianFamily(Family):
    """The Bayesian factorisation (``model = "bayesian-mf"``) for the run loop: an epoch is
    a Gibbs sweep; only sweeps after the burn-in can be selected."""

    resumable = False
    selects_every_epoch = False
    unit = "sweeps"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx, self.config = ctx, ctx.config
        train = ctx.splits.train
        self.chain = Chain(self.config, train, ctx.splits.validation, self.config.epochs,
                           ctx.clip, ctx.device)
        self.total_epochs = self.config.epochs
        self.train_rows = int(np.count_nonzero(np.diff(train.indptr)))

    @property
    def epoch(self) -> int:  # type: ignore[override]
        return self.chain.sweep

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.chain.sweep = value

    estimate_memory = staticmethod(bayesian_memory)

    def always_finish(self, ctx: RunContext) -> bool:
        return True  # the model is built from the kept samples

    def before_epoch(self, clock: EpochClock) -> None:
        self.chain.plan(clock)

    def train_epoch(self) -> tuple[float, float]:
        return self.chain.step()

    def validate(self) -> tuple[float, float]:
        return self.chain.validate()

    def end_epoch(self, metrics: EpochMetrics) -> bool:
        return self.chain.sampled

    def select_without_validation(self, metrics: EpochMetrics,
                                  best: EpochMetrics | None) -> bool:
        return True  # the latest sample average

    def snapshot(self) -> list:
        return self.chain.samples()

    def model(self, snapshot: list) -> RatingModel:
        return model_from_samples(snapshot, float(self.ctx.splits.train.data.mean()),
                                  self.config, self.ctx.dataset.n_movies, self.ctx.clip)

    def refit_cost(self, epochs: int, history: list[EpochMetrics],
                   ranking_fit: float) -> tuple[float, str]:
        # a refit worth running: the sweeps that fit must get past the burn-in
        known, train = self.ctx.known, self.ctx.splits.train
        sweep_seconds = max(m.seconds for m in history[-3:]) * known.nnz / max(train.nnz, 1)
        return (self.chain.burn_in + 2) * sweep_seconds + ranking_fit, (
            f"the refit on training + validation ratings (needs ~{epochs} sweeps of "
            f"~{sweep_seconds:.1f} s; {self.ctx.deadline.remaining():.0f} s left)"
        )

    def refit_detail(self, epochs: int) -> str:
        return f"up to {epochs} sweeps on training + validation ratings"

    def refit(self, epochs: int, history: list[EpochMetrics], deadline: Deadline) -> Refit:
        """A fresh chain of the selected number of sweeps (as many as fit before
        ``deadline``) on training + validation ratings, with the selection chain's burn-in."""
        known = self.ctx.known
        chain = Chain(self.config.replace(burn_in=self.chain.burn_in), known, None, epochs,
                      self.ctx.clip, self.ctx.device)
        clock = EpochClock(deadline)
        out_of_time = False
        while chain.sweep < epochs:
            if not clock.next_fits():
                out_of_time = True
                break
            chain.plan(clock)
            start = time.perf_counter()
            chain.step()
            clock.record(time.perf_counter() - start)
        model = model_from_samples(chain.samples(), float(known.data.mean()), self.config,
                                   self.ctx.dataset.n_movies, self.ctx.clip)
        return Refit(model, chain.sweep,
                     f"refit: {chain.sweep} of {epochs} sweeps on training + validation ratings"
                     + (" (the budget ended it)" if out_of_time else ""), out_of_time)

    def best_extras(self, history: list[EpochMetrics]) -> dict:
        return {"sweeps": [m.to_dict() for m in history]}

    def saved_history(self, saved: dict) -> list[dict]:
        return list(saved["best"]["sweeps"])

    def trained_summary(self, history: list[EpochMetrics], out_of_time: bool) -> str:
        return (f"{len(history)} of {self.total_epochs} sweeps"
                + (" (the budget ended the chain)" if out_of_time else "")
                + f", burn-in {self.chain.burn_in}")
