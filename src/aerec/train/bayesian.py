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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from aerec.config import TrainConfig
from aerec.model.bayesian_mf import BayesianMF
from aerec.model.kernels import (
    gaussian_rows_kernel,
    numba_threads,
    sampled_dot_kernel,
    sparse_dense_kernel,
)
from aerec.train.batching import union_rows
from aerec.train.budget import BudgetReport, Deadline, EpochClock
from aerec.checkpoint import TrainingStats, build_payload, read_payload, save_checkpoint
from aerec.train.events import Callback, EpochFinished, RunFinished, RunStarted, StageStarted
from aerec.train.finish import budgeted_ranking, ranking_seconds, with_ranking
from aerec.train.metrics_log import EpochMetrics, plot_learning_curve, write_metrics_csv
from aerec.train.trainer import resolve_device

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
        (with ``noise_scales``) the users' and movies' noise-precision scales."""
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
        users at a time (no per-rating array of the whole matrix is held)."""
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


@dataclass
class Chain:
    """What :func:`run_chain` did: per-sweep metrics, the selected sweep (lowest validation
    RMSE of the running posterior mean after the burn-in; the last sweep without validation
    ratings), that sweep's kept samples, and whether the deadline ended it."""

    history: list[EpochMetrics]
    best_sweep: int
    samples: list
    burn_in: int
    out_of_time: bool = False


def run_chain(
    config: TrainConfig, train: sp.csr_matrix, validation: sp.csr_matrix | None, sweeps: int,
    clip: tuple[float, float], on_sweep=None, deadline: Deadline | None = None,
) -> Chain:
    """Run ``sweeps`` sweeps (fewer if early stopping triggers, or when the next sweep would
    not end before ``deadline``).

    Under a deadline the chain is planned after its first sweep: the sweeps that fit decide
    the burn-in (at most a fifth of them, never more than ``config.burn_in``) and the thinning,
    so ``kept_samples`` samples are spread over the sweeps the budget allows."""
    sampler = GibbsSampler(train, config.factors, config.noise_precision, config.seed,
                           config.noise_scales, config.audience_prior, config.init_scale,
                           device=str(resolve_device(config.device)))
    has_validation = validation is not None and validation.nnz > 0
    truth = validation.data.astype(np.float64) if has_validation else None
    clock = EpochClock(deadline)
    burn_in, thin = config.burn_in, thinning(config, sweeps)
    kept: deque = deque(maxlen=config.kept_samples)
    running, averaged = None, 0
    history: list[EpochMetrics] = []
    best_sweep, best_rmse, best_kept, bad = 0, math.inf, [], 0
    out_of_time = False
    for sweep in range(1, sweeps + 1):
        if not clock.next_fits():
            out_of_time = True
            break
        if sweep == 2 and clock.deadline.limited:
            planned = min(sweeps, 1 + clock.affordable(sweeps))
            burn_in = min(config.burn_in, max(1, planned // 5))
            thin = thinning(config, planned, burn_in)
        start = time.perf_counter()
        sampler.sweep()
        train_loss, train_rmse = sampler.fit_errors(clip)
        sampled = sweep > burn_in
        if sampled and (sweep - burn_in - 1) % thin == 0:
            kept.append(sampler.sample())
        val_loss = val_rmse = math.nan
        if has_validation:
            predicted = sampler.predict(validation)
            if sampled:
                running = predicted if running is None else running + predicted
                averaged += 1
                predicted = running / averaged
            val_loss = float(np.mean((predicted - truth) ** 2))
            val_rmse = float(np.sqrt(np.mean((np.clip(predicted, *clip) - truth) ** 2)))
        metrics = EpochMetrics(sweep, train_loss, train_rmse, val_loss, val_rmse,
                               time.perf_counter() - start, math.nan)
        clock.record(metrics.seconds)
        history.append(metrics)
        improved = sampled and (not has_validation or val_rmse < best_rmse)
        if improved:
            best_sweep, best_rmse, best_kept, bad = sweep, val_rmse, list(kept), 0
        elif sampled:
            bad += 1
        if on_sweep is not None:
            on_sweep(metrics, best_sweep or sweep, improved)
        if has_validation and config.patience and bad >= config.patience:
            break
    if not best_kept:  # stopped (by the deadline) before any sample: keep the last state
        best_sweep, best_kept = len(history), [sampler.sample()]
    return Chain(history, best_sweep, best_kept, burn_in, out_of_time)


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


def train_bayesian(
    config: TrainConfig, ds, splits, dataset_info: dict, out_dir: Path, resume: bool,
    callback: Callback | None, start_time: float, deadline: Deadline | None = None,
):
    """Run the chain, select the sweep on validation, optionally refit and add a ranking head;
    write ``config.toml``, ``metrics.csv``, ``learning_curve.png``, ``best.pt``, ``last.pt``
    (and ``selected.pt`` with ``refit``). Returns a :class:`~aerec.train.run.TrainResult`.

    Under a ``deadline`` the selection chain gets half of the time (all of it without a
    refit) after keeping back what the ranking head is expected to cost; the refit chain
    runs the selected number of sweeps or as many as fit before the deadline."""
    from aerec.train.run import (
        BEST_FILE,
        CONFIG_FILE,
        CURVE_FILE,
        LAST_FILE,
        METRICS_FILE,
        SELECTED_FILE,
        TrainResult,
        _min,
    )

    deadline = deadline or Deadline()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in (CONFIG_FILE, METRICS_FILE, CURVE_FILE,
                                               BEST_FILE, LAST_FILE, SELECTED_FILE)}
    scale = ds.scale
    clip = (scale.minimum, scale.maximum)
    has_validation = splits.validation.nnz > 0
    truth = splits.validation.data.astype(np.float64)
    stats = TrainingStats.from_matrix(splits.train)
    baseline_val_rmse = (
        float(np.sqrt(np.mean((truth - stats.global_mean) ** 2))) if has_validation else math.nan
    )
    out_of_time = False

    if resume and paths[LAST_FILE].is_file():  # a finished run: report it as it stands
        saved = read_payload(paths[LAST_FILE])
        history = [EpochMetrics.from_dict(h) for h in saved["best"]["sweeps"]]
        best_sweep = int(saved["epoch"])
        notes = {k: v for k, v in saved["best"].items() if k in ("refit", "ranking", "budget")}
    else:
        config.save_toml(paths[CONFIG_FILE])
        if callback is not None:
            callback(RunStarted(
                out_dir, config, 1, config.epochs, 1, int(np.count_nonzero(
                    np.diff(splits.train.indptr))), int(splits.train.nnz),
                int(splits.validation.nnz),
            ))

        def on_sweep(metrics, best, improved):
            if callback is not None:
                callback(EpochFinished(metrics, best, improved))

        notes: dict = {}
        report = BudgetReport(config.time_budget) if deadline.limited else None
        ranking_wanted = config.ranking == "ease" and has_validation
        reserve = (ranking_seconds(int(splits.train.nnz), ds.n_movies, ds.n_users,
                                   choose_lambda=not config.ease_regularisation)
                   if ranking_wanted and deadline.limited else 0.0)
        refitting = config.refit and has_validation
        chain = run_chain(
            config, splits.train, splits.validation, config.epochs, clip, on_sweep,
            deadline.share(0.5 if refitting else 1.0, reserve),
        )
        history, best_sweep = chain.history, chain.best_sweep
        out_of_time = chain.out_of_time
        if report is not None:
            report.trained.append(
                f"{len(history)} of {config.epochs} sweeps"
                + (" (the budget ended the chain)" if chain.out_of_time else "")
                + f", burn-in {chain.burn_in}"
            )
        selected = model_from_samples(
            chain.samples, float(splits.train.data.mean()), config, ds.n_movies, clip
        )
        ranking = budgeted_ranking(
            config, selected, splits.train, splits.validation, scale.relevance_threshold(),
            n_users=ds.n_users, deadline=deadline, report=report, callback=callback,
        )
        if ranking is not None:
            *ranking, notes["ranking"] = ranking
        # what the refit trains on and the ranking head reads: all non-test ratings
        known = (union_rows(splits.train, splits.validation)
                 if refitting or ranking is not None else None)
        best = {**history[best_sweep - 1].to_dict(), "bad_epochs": len(history) - best_sweep,
                "sweeps": [m.to_dict() for m in history], **notes}

        def payload(kind: str, model, stats_of, extra: dict | None = None) -> dict:
            return build_payload(
                kind=kind, model=model, config=config, epoch=best_sweep,
                history=[m.to_dict() for m in history[:best_sweep]],
                best={**best, **(extra or {})}, dataset_info=dataset_info,
                user_ids=ds.user_ids, movie_ids=ds.movie_ids, titles=ds.titles, years=ds.years,
                scale=scale, stats=stats_of, split=splits.params,
            )

        final, final_stats = selected, stats
        # a refit worth running: the sweeps that fit must get past the burn-in
        sweep_seconds = max(m.seconds for m in history[-3:]) * known.nnz / max(
            splits.train.nnz, 1) if refitting else 0.0
        fit_seconds = reserve * 0.25 if ranking is not None else 0.0
        if refitting and not deadline.allows((chain.burn_in + 2) * sweep_seconds + fit_seconds):
            report.skipped.append(
                f"the refit on training + validation ratings (needs ~{best_sweep} sweeps of "
                f"~{sweep_seconds:.1f} s; {deadline.remaining():.0f} s left)"
            )
            refitting = False
        if refitting:
            save_checkpoint(payload("selected", selected, stats), paths[SELECTED_FILE])
            if callback is not None:
                callback(StageStarted(
                    "refit", f"up to {best_sweep} sweeps on training + validation ratings"))
            refit_chain = run_chain(
                config.replace(burn_in=chain.burn_in), known, None, best_sweep, clip,
                deadline=deadline.share(1.0, fit_seconds),
            )
            final = model_from_samples(
                refit_chain.samples, float(known.data.mean()), config, ds.n_movies, clip
            )
            final_stats = TrainingStats.from_matrix(known)
            done = len(refit_chain.history)
            notes["refit"] = {"epochs": done, "train_ratings": int(known.nnz)}
            if report is not None:
                report.trained.append(
                    f"refit: {done} of {best_sweep} sweeps on training + validation ratings"
                    + (" (the budget ended it)" if refit_chain.out_of_time else "")
                )
            out_of_time = out_of_time or refit_chain.out_of_time
        if ranking is not None:
            final = with_ranking(final, known, *ranking)
        if report is not None:
            report.seconds_used = time.perf_counter() - start_time
            notes["budget"] = report.to_dict()
        final_payload = payload("best", final, final_stats, {**notes, "finished": True})
        save_checkpoint(final_payload, paths[BEST_FILE])
        save_checkpoint({**final_payload, "kind": "last"}, paths[LAST_FILE])
        write_metrics_csv(paths[METRICS_FILE], history)
        plot_learning_curve(paths[CURVE_FILE], history, title=out_dir.name)

    best_i = best_sweep - 1
    result = TrainResult(
        run_dir=out_dir, config=config, best_epoch=best_sweep, epochs_completed=len(history),
        best_train_loss=_min([m.train_loss for m in history]),
        best_train_rmse=_min([m.train_rmse for m in history]),
        best_val_loss=history[best_i].val_loss, best_val_rmse=history[best_i].val_rmse,
        baseline_val_rmse=baseline_val_rmse, seconds=time.perf_counter() - start_time,
        stopped_early=len(history) < config.epochs and not out_of_time, warnings=[],
        history=history, batches_per_epoch=1, config_path=paths[CONFIG_FILE],
        metrics_path=paths[METRICS_FILE], curve_path=paths[CURVE_FILE],
        best_checkpoint=paths[BEST_FILE], last_checkpoint=paths[LAST_FILE],
        selected_checkpoint=(
            paths[SELECTED_FILE] if paths[SELECTED_FILE].is_file() else paths[BEST_FILE]
        ),
        notes=notes,
    )
    if callback is not None:
        callback(RunFinished(result))
    return result
