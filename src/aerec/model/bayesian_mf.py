"""Bayesian matrix factorisation (BPMF, Salakhutdinov & Mnih 2008) with the autoencoders'
prediction API, scoring every user — known or new — by exact posterior inference.

The model is ``r_um ≈ μ + u_uᵀ v_m`` with Gaussian noise of precision ``α`` and Gaussian priors
on the user vectors ``u`` and movie vectors ``v`` whose means and precisions have
Normal–Wishart hyperpriors. Training (:mod:`aerec.train.bayesian`) draws posterior samples by
Gibbs sampling; this module keeps a thinned set of ``S`` of them — each sample's movie vectors
``V_s`` and user prior ``(μ_s, Λ_s)`` — and nothing per user, so its size does not grow with the
number of users.

A user is scored from their ratings ``r`` alone, the way the autoencoders encode a rating
vector: for each kept sample, the user's vector is the mean of its Gaussian posterior given
``V_s``,

    u_s = (Λ_s + α Σ_m γ_m v_m v_mᵀ)⁻¹ (Λ_s μ_s + α Σ_m γ_m (r_m − μ) v_m)   (m over rated movies)

(the *encoder*; the conditional the Gibbs sampler itself draws from). ``γ_m`` is movie ``m``'s
noise-precision scale under robust noise (``noise_scales``; kept per sample in ``movie_noise``,
all 1 otherwise); the user's own scale is unknown for a user being scored and takes its prior
mean, 1. The predicted rating
is the average over samples of ``μ + u_sᵀ v`` (the *decoder*). Averaging these conditional means
rather than sampled user vectors is the Rao–Blackwellised posterior mean. A new user and a user
seen in training are scored alike, so the fold-in of the recommendation API needs nothing else.
Cost per user: ``S × (ratings × d² + d³)`` for the encoder, ``S × n_movies × d`` for a full row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aerec.model.base import ModelBase, register
from aerec.model.derived import derived
from aerec.model.kernels import as_numpy, gaussian_rows_kernel
from aerec.model.leave_one_out import as_index, downdated
from aerec.model.sparse_rows import SparseRows

#: Batches of at most this many users are encoded with PyTorch rather than the compiled
#: kernel (:meth:`BayesianMF.user_vectors`): the kernel's one-off start-up (importing
#: Numba, loading its cache) costs more than it saves on a few users.
SMALL_BATCH = 8


@dataclass(frozen=True)
class BayesianMFConfig:
    """The Bayesian factorisation's settings (``model = "bayesian-mf"``, sampled by Gibbs
    sampling in :mod:`aerec.train.bayesian`; ``epochs`` counts sweeps there). Part of the flat
    :class:`aerec.config.TrainConfig`."""

    #: bayesian-mf: standard deviation of the chain's random starting vectors. Small starts
    #: make the first hyperparameter draws shrink hard, so the chain takes many sweeps to
    #: grow its factors; 0.3 reaches a given validation RMSE in fewer sweeps on Netflix-shaped
    #: data (docs/results.md), 0.1 is kept for the presets measured with it.
    init_scale: float = 0.1
    #: bayesian-mf: width d of the user and movie vectors.
    factors: int = 32
    #: bayesian-mf: precision α of the rating noise (1 / variance, in stars⁻²).
    noise_precision: float = 2.0
    #: bayesian-mf: robust noise (Lakshminarayanan, Bouchard & Archambeau 2011). Each user and
    #: each movie gets a noise-precision scale γ with a Gamma(a₀, rate a₀) prior (mean 1),
    #: sampled with the rest, so a rating's noise precision is α γ_user γ_movie: erratic users
    #: and divisive movies weigh less in what the others learn. This is a₀ (smaller: scales
    #: vary more); 0 = one shared precision α (classic BPMF). A user being scored gets the
    #: prior's γ = 1; the movies' scales are kept in the model.
    noise_scales: float = 0.0
    #: bayesian-mf: the audience prior. A movie's prior mean also depends on *who* rated it:
    #: ``μ + Σ_u Γ_u / √n`` over its n raters, with per-user weights Γ and their precision
    #: sampled with the rest (a side-information prior as in Macau, Simm et al. 2015, with the
    #: rating pattern as the side information: the "flipped" implicit feedback of Rendle et
    #: al.). Movies with few ratings borrow from movies with a similar audience. Only training
    #: changes (about 5 sparse products more per sweep); scoring a user is the same.
    audience_prior: bool = False
    #: bayesian-mf: sweeps discarded before posterior samples are averaged.
    burn_in: int = 50
    #: bayesian-mf: posterior samples kept in the model (thinned evenly over the sweeps after
    #: ``burn_in``); predicting costs this many encoder solves per user.
    kept_samples: int = 32

    @staticmethod
    def describe(c: Any) -> str:
        """One line that says what the flat config ``c`` trains."""
        extras = [name for name, on in (("robust noise", c.noise_scales > 0),
                                        ("audience prior", c.audience_prior)) if on]
        return (f"Bayesian MF, {c.factors} factors" + "".join(f", {e}" for e in extras)
                + f", up to {c.epochs} Gibbs sweeps (burn-in {c.burn_in}), seed {c.seed}"
                + (", refitted" if c.refit else ""))

    @staticmethod
    def problems(c: Any) -> Iterator[str]:
        """What is wrong with the Bayesian settings of the flat config ``c``."""
        if not (c.init_scale > 0 and math.isfinite(c.init_scale)):
            yield f"init_scale must be a positive number, got {c.init_scale}"
        if c.factors < 1:
            yield f"factors must be ≥ 1, got {c.factors}"
        if not (c.noise_precision > 0 and math.isfinite(c.noise_precision)):
            yield f"noise_precision must be a positive number, got {c.noise_precision}"
        if not (c.noise_scales >= 0 and math.isfinite(c.noise_scales)):
            yield f"noise_scales must be ≥ 0 (0 = off), got {c.noise_scales}"
        if c.burn_in < 0:
            yield f"burn_in must be ≥ 0, got {c.burn_in}"
        if c.kept_samples < 1:
            yield f"kept_samples must be ≥ 1, got {c.kept_samples}"
        if c.epochs <= c.burn_in:
            yield f"epochs ({c.epochs}) must exceed burn_in ({c.burn_in}) for bayesian-mf"


@register("bayesian-mf", config=BayesianMFConfig, model="bayesian-mf", priority=10,
          summary="Bayesian matrix factorisation (posterior samples; users scored by "
                  "exact inference)")
class BayesianMF(ModelBase):
    """Posterior samples of a Bayesian factorisation over ``n_movies`` movies.

    Buffers: ``movie_factors`` ``(samples, n_movies, factors)``, ``user_mean``
    ``(samples, factors)``, ``user_precision`` ``(samples, factors, factors)`` (float64), and
    the scalars ``global_mean`` and ``noise_precision`` (``α``), and ``movie_noise``
    ``(samples, n_movies)``, the movies' noise-precision scales ``γ`` (ones for classic BPMF).
    ``clip`` clamps predictions to the rating scale.
    """

    orientation = "user"
    label = "Bayesian MF"

    def __init__(
        self, n_movies: int, factors: int, samples: int, *,
        clip: tuple[float, float] | None = None, dtype: torch.dtype = torch.float32,
        **_: object,
    ) -> None:
        super().__init__()
        if n_movies < 1 or factors < 1 or samples < 1:
            raise ValueError("n_movies, factors and samples must be ≥ 1")
        self.n_movies, self.factors, self.samples = int(n_movies), int(factors), int(samples)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self._dtype = dtype
        f64 = torch.float64
        self.register_buffer("movie_factors", torch.zeros(samples, n_movies, factors, dtype=f64))
        self.register_buffer("user_mean", torch.zeros(samples, factors, dtype=f64))
        self.register_buffer(
            "user_precision", torch.eye(factors, dtype=f64).expand(samples, -1, -1).clone()
        )
        self.register_buffer("global_mean", torch.zeros((), dtype=f64))
        self.register_buffer("noise_precision", torch.ones((), dtype=f64))
        self.register_buffer("movie_noise", torch.ones(samples, n_movies, dtype=f64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the noise scales existed: one shared noise precision
        state_dict.setdefault(prefix + "movie_noise", torch.ones_like(self.movie_noise))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.movie_factors.device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @classmethod
    def from_architecture(cls, arch: dict, **kwargs: object) -> BayesianMF:
        """An (unsampled) model shaped as an ``architecture()`` dict describes."""
        clip = arch.get("clip")
        return cls(int(arch["n_movies"]), int(arch["factors"]), int(arch["samples"]),
                   clip=None if clip is None else (float(clip[0]), float(clip[1])), **kwargs)

    def architecture(self) -> dict:
        """``{"kind": "bayesian-mf", "n_movies", "factors", "samples", "clip"}``."""
        return {
            "kind": "bayesian-mf", "n_movies": self.n_movies, "factors": self.factors,
            "samples": self.samples, "clip": None if self.clip is None else list(self.clip),
        }

    @torch.no_grad()
    def set_samples(
        self, movie_factors: object, user_mean: object, user_precision: object,
        global_mean: float, noise_precision: float, movie_noise: object = None,
    ) -> None:
        """Store posterior samples (arrays shaped as the buffers; ``movie_noise`` all ones when
        not given)."""
        if movie_noise is None:
            movie_noise = torch.ones_like(self.movie_noise)
        for name, value in (("movie_factors", movie_factors), ("user_mean", user_mean),
                            ("user_precision", user_precision), ("movie_noise", movie_noise)):
            tensor = torch.as_tensor(value, dtype=torch.float64)
            if tensor.shape != getattr(self, name).shape:
                raise ValueError(
                    f"{name} has shape {tuple(tensor.shape)}, expected "
                    f"{tuple(getattr(self, name).shape)}"
                )
            getattr(self, name).copy_(tensor)
        self.global_mean.fill_(float(global_mean))
        self.noise_precision.fill_(float(noise_precision))

    # ------------------------------------------------------------------ the encoder
    def _inputs(self, indptr: object, indices: object, values: object) -> SparseRows:
        return SparseRows.from_arrays(
            indptr, indices, values, self.n_movies, dtype=torch.float64, device=self.device
        )

    def user_vectors(
        self, inputs: SparseRows, samples: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Each sample's posterior-mean user vector given the rows' ratings,
        ``(samples, batch, factors)`` float64 (see the module docstring); one compiled pass
        over the ratings per sample, on the calling thread. ``samples``: only these samples'
        vectors (default all). Up to :data:`SMALL_BATCH` users are solved with PyTorch
        instead — the same formula — so scoring one user never loads Numba (about a second
        of a one-off ``aerec recommend``)."""
        chosen = list(range(self.samples)) if samples is None else [int(s) for s in samples]
        if inputs.batch_size <= SMALL_BATCH:
            return self._user_vectors_small(inputs, chosen)
        solve = gaussian_rows_kernel(parallel=False)
        indptr = as_numpy(inputs.indptr.cpu())
        indices = as_numpy(inputs.indices.cpu())
        residual = as_numpy(inputs.values.cpu()) - float(self.global_mean)
        movies = as_numpy(self.movie_factors.cpu())
        precision = as_numpy(self.user_precision.cpu())
        shift = np.einsum("sij,sj->si", precision, as_numpy(self.user_mean.cpu()))
        out = np.empty((len(chosen), inputs.batch_size, self.factors))
        zeros = np.zeros((inputs.batch_size, self.factors))
        alpha = float(self.noise_precision)
        scales = as_numpy(self.movie_noise.cpu())
        shifts = np.repeat(shift[:, None], inputs.batch_size, axis=1)  # (samples, batch, d)
        for i, s in enumerate(chosen):
            solve(out[i], indptr, indices, residual, scales[s][indices], movies[s],
                  precision[s], shifts[s], alpha, zeros)
        return torch.from_numpy(out).to(self.device)

    def _user_vectors_small(self, inputs: SparseRows, chosen: list[int]) -> torch.Tensor:
        """:meth:`user_vectors` of a few users by batched PyTorch solves over the samples."""
        which = torch.as_tensor(chosen, dtype=torch.int64, device=self.device)
        prior = self.user_precision[which]  # (samples, d, d)
        shift = (prior @ self.user_mean[which][..., None])[..., 0]
        out = torch.empty(len(chosen), inputs.batch_size, self.factors, dtype=torch.float64,
                          device=self.device)
        indptr = inputs.indptr.tolist()
        for r in range(inputs.batch_size):
            cols = inputs.indices[indptr[r]:indptr[r + 1]]
            # the rated movies first, then the samples: never copy all movies' vectors
            noise = self.noise_precision * self.movie_noise[:, cols][which]
            scale = noise.sqrt()  # (samples, n): √(α γ_m)
            a = scale[..., None] * self.movie_factors[:, cols][which]  # (samples, n, d)
            response = scale * (inputs.values[indptr[r]:indptr[r + 1]].double()
                                - self.global_mean)
            rhs = shift + (a.transpose(1, 2) @ response[..., None])[..., 0]
            factor = torch.linalg.cholesky(prior + a.transpose(1, 2) @ a)
            out[:, r] = torch.cholesky_solve(rhs[..., None], factor)[..., 0]
        return out

    def _stacked_factors(self) -> torch.Tensor:
        """Each movie's vectors of every sample side by side, ``(n_movies, samples × d)``
        float64, so that one product sums the samples' predictions; built once per change of
        ``movie_factors``."""
        return derived(self, "_stacked_cache", self.movie_factors, lambda: (
            self.movie_factors.permute(1, 0, 2).reshape(self.n_movies, -1).contiguous()
        ))

    # ------------------------------------------------------------------ prediction API
    def _clip(self, predictions: torch.Tensor) -> torch.Tensor:
        return predictions if self.clip is None else predictions.clamp(*self.clip)

    @torch.no_grad()
    def code_and_predict(
        self, indptr: object, indices: object, values: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes (batch, factors), predictions (batch, n_movies))`` for users given by their
        ratings (CSR arrays over movies). The code is the user's vector under the last kept
        sample; predictions average all samples (clamped when the model has ``clip``)."""
        users = self.user_vectors(self._inputs(indptr, indices, values))
        batch = users.shape[1]
        # Σ_s u_s · v_s as one product: (batch, samples × d) @ (samples × d, n_movies)
        total = users.permute(1, 0, 2).reshape(batch, -1) @ self._stacked_factors().t()
        predictions = total / self.samples + self.global_mean
        return users[-1].to(self.dtype), self._clip(predictions).to(self.dtype)

    @torch.no_grad()
    def predict_dense(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """Predicted ratings of every movie, ``(batch, n_movies)``."""
        return self.code_and_predict(indptr, indices, values)[1]

    @torch.no_grad()
    def encode(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """Codes of a batch of users, ``(batch, factors)``: the last sample's vectors (as in
        :meth:`code_and_predict`), the only ones solved."""
        inputs = self._inputs(indptr, indices, values)
        return self.user_vectors(inputs, [self.samples - 1])[0].to(self.dtype)

    @torch.no_grad()
    def predict_at(
        self, indptr: object, indices: object, values: object, rows: object, cols: object
    ) -> torch.Tensor:
        """Predicted ratings at ``(rows[j], cols[j])`` (batch row, movie), ``(k,)``; costs
        O(k × samples × factors) after the encoder, never ``batch × n_movies``."""
        inputs = self._inputs(indptr, indices, values)
        rows_t = torch.as_tensor(rows, dtype=torch.int64, device=self.device).reshape(-1)
        cols_t = torch.as_tensor(cols, dtype=torch.int64, device=self.device).reshape(-1)
        if rows_t.numel() and (int(rows_t.min()) < 0 or int(rows_t.max()) >= inputs.batch_size):
            raise IndexError(f"row index out of range for a batch of {inputs.batch_size} rows")
        if cols_t.numel() and (int(cols_t.min()) < 0 or int(cols_t.max()) >= self.n_movies):
            raise IndexError(f"column index out of range for {self.n_movies} movies")
        users = self.user_vectors(inputs).permute(1, 0, 2).reshape(inputs.batch_size, -1)
        stacked = self._stacked_factors()
        total = torch.empty(rows_t.shape[0], dtype=torch.float64, device=self.device)
        step = 1 << 14  # positions at a time: a (step, samples × d) block
        for start in range(0, rows_t.shape[0], step):
            part = slice(start, start + step)
            total[part] = (users.index_select(0, rows_t[part])
                           * stacked.index_select(0, cols_t[part])).sum(1)
        return self._clip(total / self.samples + self.global_mean).to(self.dtype)

    @torch.no_grad()
    def leave_one_out_at(
        self, columns: np.ndarray, ratings: np.ndarray, tested: np.ndarray, targets: np.ndarray
    ) -> torch.Tensor:
        """Predictions at ``targets`` for one user with every rating (row 0) and without each
        ``tested`` rating (rows 1 …), ``(m + 1, k)``: per sample, the encoder's solve and an
        exact rank-one downdate of it per left-out rating (:mod:`aerec.model.leave_one_out`)."""
        cols = as_index(columns, self.device)
        wanted = as_index(targets, self.device)
        scale = (self.noise_precision * self.movie_noise[:, cols]).sqrt()  # (samples, n)
        residual = torch.as_tensor(np.asarray(ratings, dtype=np.float64), device=self.device)
        response = scale * (residual - self.global_mean)
        a = scale[..., None] * self.movie_factors[:, cols]  # (samples, n, d)
        precision = self.user_precision + a.transpose(1, 2) @ a
        rhs = (self.user_precision @ self.user_mean[..., None])[..., 0]
        rhs = rhs + (a.transpose(1, 2) @ response[..., None])[..., 0]
        factor = torch.linalg.cholesky(precision)
        w = torch.cholesky_solve(rhs[..., None], factor)[..., 0]
        out = downdated(
            a, response, factor, w,
            as_index(tested, self.device),
            self.movie_factors[:, wanted],
        ).mean(0)
        return self._clip(out + self.global_mean).to(self.dtype)

