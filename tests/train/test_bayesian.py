"""Training the Bayesian factorisation (``model = "bayesian-mf"``) by Gibbs sampling, and
ensembles whose weights are fitted on validation.

Guards against: a compiled conditional that is not the Gaussian the sampler must draw from; a
chain that depends on the thread count or is not reproducible from its seed; robust noise
scales that do not single out noisy users or lose track of which rating they weigh; hyperparameter
draws that are not positive definite; a run whose selected sweep, refit, files or resume differ
from what the autoencoders' runs promise; ensemble weights that are not the validation
least-squares fit, or a reported validation RMSE that is fitted in-sample."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from aerec.config import PRESETS, ConfigError, TrainConfig
from aerec.data.splits import make_splits
from aerec.data.store import load_dataset
from aerec.evaluate import evaluate_run
from aerec.model import BayesianMF, Ensemble
from aerec.model.kernels import gaussian_rows_kernel, sparse_dense_kernel
from aerec.train import bayesian, load_checkpoint, train
from aerec.train.bayesian import GibbsSampler, _wishart, conjugate_gradient, thinning
from aerec.train.ensemble import fit_weights

from .conftest import N_MOVIES, USER_MEMBER

SMALL = PRESETS["bayesian-mf"].replace(
    factors=4, epochs=60, burn_in=10, kept_samples=8, patience=0, threads=1, seed=4
)


def _csr(seed=0, shape=(5, 7), density=0.5):
    rng = np.random.default_rng(seed)
    m = sp.random(*shape, density=density, random_state=seed, format="csr")
    m.data = rng.normal(size=m.nnz)
    return m


@pytest.mark.parametrize("parallel", [True, False])
def test_conditional_kernel_mean_and_draw(parallel):
    rng = np.random.default_rng(1)
    m, d, alpha = _csr(), 3, 1.3
    other = rng.normal(size=(m.shape[1], d))
    a = rng.normal(size=(d, d))
    precision, shift = a @ a.T + np.eye(d), rng.normal(size=(m.shape[0], d))  # per row
    noise = rng.normal(size=(m.shape[0], d))
    weights = rng.gamma(2.0, 0.5, size=m.nnz)  # each rating's noise-precision scale
    out_mean, out_draw = np.empty((m.shape[0], d)), np.empty((m.shape[0], d))
    args = (m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data, weights, other,
            precision, shift, alpha)
    kernel = gaussian_rows_kernel(parallel)
    kernel(out_mean, *args, np.zeros_like(noise))
    kernel(out_draw, *args, noise)
    for r in range(m.shape[0]):
        part = slice(m.indptr[r], m.indptr[r + 1])
        cols, x, w = m.indices[part], m.data[part], alpha * weights[part]
        p = precision + (other[cols] * w[:, None]).T @ other[cols]
        mean = np.linalg.solve(p, shift[r] + (other[cols] * w[:, None]).T @ x)
        np.testing.assert_allclose(out_mean[r], mean, rtol=1e-10, atol=1e-12)
        # mean + L^-T z has covariance P^-1
        lower = np.linalg.cholesky(p)
        np.testing.assert_allclose(out_draw[r], mean + np.linalg.solve(lower.T, noise[r]),
                                   rtol=1e-10, atol=1e-12)


def test_wishart_draws_are_positive_definite_with_the_right_mean():
    rng = np.random.default_rng(2)
    scale = np.array([[0.5, 0.1], [0.1, 0.3]])
    draws = np.stack([_wishart(rng, scale, 6.0) for _ in range(4000)])
    assert (np.linalg.eigvalsh(draws) > 0).all()
    np.testing.assert_allclose(draws.mean(0), 6.0 * scale, atol=0.08)


def _lowrank_train(lowrank_dir):
    ds = load_dataset(lowrank_dir)
    return ds, make_splits(ds, "random")


def test_chain_fits_and_does_not_depend_on_threads(lowrank_dir):
    _, splits = _lowrank_train(lowrank_dir)
    truth = splits.train.data.astype(np.float64)
    mean_rmse = float(np.sqrt(np.mean((truth - truth.mean()) ** 2)))
    states = []
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        sampler = GibbsSampler(splits.train, 3, 2.0, seed=5)
        for _ in range(15):
            sampler.sweep()
        states.append((sampler.users.copy(), sampler.movies.copy()))
        rmse = float(np.sqrt(np.mean((sampler.predict(splits.train) - truth) ** 2)))
        assert rmse < 0.6 * mean_rmse
        assert (np.linalg.eigvalsh(sampler.user_prior[1]) > 0).all()
    np.testing.assert_array_equal(states[0][0], states[1][0])
    np.testing.assert_array_equal(states[0][1], states[1][1])
    other = GibbsSampler(splits.train, 3, 2.0, seed=6)
    other.sweep()
    assert not np.array_equal(other.users, states[0][0])


def test_noise_scales_find_the_noisy_users_and_are_reproducible(lowrank_dir):
    """Robust noise: users whose ratings carry extra noise get smaller precision scales, the
    per-rating weights follow the ratings from the by-user to the by-movie order, and the chain
    stays independent of the thread count."""
    _, splits = _lowrank_train(lowrank_dir)
    ratings = splits.train.copy().astype(np.float64)
    rng = np.random.default_rng(0)
    noisy = np.arange(ratings.shape[0]) % 2 == 0
    rows = np.repeat(np.arange(ratings.shape[0]), np.diff(ratings.indptr))
    ratings.data = ratings.data + np.where(noisy[rows], rng.normal(0, 1.5, ratings.nnz), 0)
    states = []
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        sampler = GibbsSampler(ratings, 3, 2.0, seed=5, noise_scales=2.0)
        np.testing.assert_array_equal(sampler.by_user[2][sampler._movie_order],
                                      sampler.by_movie[2])
        gammas = []
        for sweep in range(30):
            sampler.sweep()
            if sweep >= 10:
                gammas.append(sampler.user_scale)
        states.append((sampler.users.copy(), sampler.movie_scale.copy()))
        mean_gamma = np.mean(gammas, axis=0)
        has = np.diff(ratings.indptr) >= 5
        assert mean_gamma[noisy & has].mean() < 0.5 * mean_gamma[~noisy & has].mean()
        np.testing.assert_allclose(sampler._weights, sampler.user_scale[rows]
                                   * sampler.movie_scale[sampler._movie_of])
        assert sampler.sample()[3].shape == (ratings.shape[1],)
    np.testing.assert_array_equal(states[0][0], states[1][0])
    np.testing.assert_array_equal(states[0][1], states[1][1])
    # off: every scale stays 1
    plain = GibbsSampler(ratings, 3, 2.0, seed=5)
    plain.sweep()
    assert (plain.user_scale == 1).all() and (plain.movie_scale == 1).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_sparse_dense_kernel_is_scipys_product_to_the_bit(threads):
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    m = _csr(seed=4, shape=(40, 30), density=0.2)
    dense = np.random.default_rng(5).normal(size=(30, 7))
    out = np.full((40, 7), np.nan)  # every entry must be written, empty rows included
    sparse_dense_kernel()(out, m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data,
                          dense)
    np.testing.assert_array_equal(out, m @ dense)


def test_conjugate_gradient_solves_each_column():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(6, 6))
    matrix = a @ a.T + 0.5 * np.eye(6)
    rhs = rng.normal(size=(6, 3))
    got = conjugate_gradient(lambda x: matrix @ x, rhs, np.zeros((6, 3)), steps=30)
    np.testing.assert_allclose(got, np.linalg.solve(matrix, rhs), rtol=1e-8, atol=1e-10)
    few = conjugate_gradient(lambda x: matrix @ x, rhs, np.zeros((6, 3)), steps=2)
    assert not np.allclose(few, got)  # the budget is honoured: 2 steps are not converged


def test_audience_weights_are_drawn_from_their_conditional(monkeypatch):
    """With enough CG steps, the perturbed normal equations give draws of Γ with the ridge
    solution as mean and (ZᵀZ + λI)⁻¹ ⊗ Λ⁻¹ as covariance."""
    monkeypatch.setattr(bayesian, "AUDIENCE_CG_STEPS", 12)  # 6 unknowns: converged
    ratings = _csr(seed=3, shape=(6, 8), density=0.6)
    ratings.data = np.abs(ratings.data) + 1
    sampler = GibbsSampler(ratings, 2, 2.0, seed=1, audience_prior=True)
    rng = np.random.default_rng(2)
    sampler.movies = rng.normal(size=(8, 2))
    mean, precision = np.array([0.3, -0.2]), np.array([[2.0, 0.5], [0.5, 1.0]])
    z = sampler.audience.toarray()
    rated = (z > 0).any(1)
    np.testing.assert_allclose((z[rated] ** 2).sum(1), 1.0)  # a movie's raters, each 1/√n
    system = z.T @ z + 1.5 * np.eye(6)
    want = np.linalg.solve(system, z.T @ (sampler.movies - mean))
    draws = []
    for _ in range(1500):
        sampler.audience_precision = 1.5
        sampler._draw_audience(mean, precision)
        draws.append(sampler.audience_vectors.copy())
    draws = np.stack(draws)
    np.testing.assert_allclose(draws.mean(0), want, atol=0.06)
    cov = np.linalg.inv(system)[0, 0] * np.linalg.inv(precision)
    np.testing.assert_allclose(np.cov(draws[:, 0].T), cov, atol=0.06)
    assert 0 < sampler.audience_precision < np.inf  # λ is drawn after Γ


def test_audience_run_fits_and_does_not_depend_on_threads(lowrank_dir, tmp_path):
    config = SMALL.replace(audience_prior=True, noise_scales=3.0, epochs=30)
    first = train(lowrank_dir, tmp_path / "a", config)
    second = train(lowrank_dir, tmp_path / "b", config.replace(threads=2))
    assert [m.val_rmse for m in first.history] == [m.val_rmse for m in second.history]
    assert first.best_val_rmse < 0.8 * first.baseline_val_rmse
    plain = train(lowrank_dir, tmp_path / "c", config.replace(audience_prior=False))
    assert plain.history[-1].val_rmse != first.history[-1].val_rmse  # the prior is used
    assert "audience-bayesian-mf" in PRESETS["best"].members


def test_robust_run_keeps_the_movie_scales(lowrank_dir, tmp_path):
    result = train(lowrank_dir, tmp_path / "rbmf", SMALL.replace(noise_scales=3.0, epochs=30))
    model = load_checkpoint(result.best_checkpoint).model
    scales = model.movie_noise.numpy()
    assert scales.shape == (model.samples, N_MOVIES) and (scales > 0).all()
    assert scales.std() > 0.01  # sampled, not left at 1
    assert result.best_val_rmse < 0.8 * result.baseline_val_rmse


def test_run_selects_refits_writes_and_resumes(lowrank_dir, tmp_path):
    config = SMALL.replace(refit=True)
    result = train(lowrank_dir, tmp_path / "bmf", config)
    assert result.best_val_rmse < 0.8 * result.baseline_val_rmse
    assert config.burn_in < result.best_epoch <= config.epochs
    assert len(result.history) == result.epochs_completed == config.epochs
    # the selected sweep has the lowest running-mean validation RMSE after the burn-in
    after = [m.val_rmse for m in result.history[config.burn_in:]]
    assert result.best_val_rmse == min(after)
    for name in ("config.toml", "metrics.csv", "learning_curve.png", "best.pt", "last.pt"):
        assert (tmp_path / "bmf" / name).is_file()
    assert (tmp_path / "bmf" / "metrics.csv").read_text().count("\n") == config.epochs + 1

    ds, splits = _lowrank_train(lowrank_dir)
    selected = load_checkpoint(result.selected_checkpoint)
    best = load_checkpoint(result.best_checkpoint)
    assert selected.kind == "selected" and isinstance(selected.model, BayesianMF)
    # samples kept up to the selected sweep: one every `thinning` sweeps after the burn-in
    kept = (result.best_epoch - config.burn_in - 1) // thinning(config) + 1
    assert selected.model.samples == min(kept, config.kept_samples)
    assert selected.stats.n_ratings == splits.train.nnz
    assert best.stats.n_ratings == splits.train.nnz + splits.validation.nnz  # refitted
    assert result.notes["refit"]["epochs"] == result.best_epoch
    # a new user is scored from their ratings alone, on the scale
    scores = best.model.predict_dense(np.array([0, 2]), np.array([3, 8]),
                                      np.array([5.0, 1.0]))
    assert scores.shape == (1, N_MOVIES) and 1.0 <= float(scores.min()) <= float(scores.max()) <= 5

    stamp = (tmp_path / "bmf" / "best.pt").stat().st_mtime_ns
    again = train(lowrank_dir, tmp_path / "bmf", resume=True)
    assert (tmp_path / "bmf" / "best.pt").stat().st_mtime_ns == stamp  # not retrained
    assert again.best_epoch == result.best_epoch
    assert again.best_val_rmse == pytest.approx(result.best_val_rmse)

    report = evaluate_run(result.run_dir)
    assert report.result("Bayesian MF").rmse < report.result("global mean").rmse


def test_same_seed_same_run(lowrank_dir, tmp_path):
    config = SMALL.replace(epochs=20, kept_samples=4)
    first = train(lowrank_dir, tmp_path / "a", config)
    second = train(lowrank_dir, tmp_path / "b", config.replace(threads=2))
    assert [m.val_rmse for m in first.history] == [m.val_rmse for m in second.history]
    a = load_checkpoint(first.best_checkpoint).model
    b = load_checkpoint(second.best_checkpoint).model
    np.testing.assert_array_equal(a.movie_factors.numpy(), b.movie_factors.numpy())


def test_thinning_spreads_the_kept_samples_over_the_chain():
    assert thinning(SMALL) == math.ceil((60 - 10) / 8)
    assert thinning(SMALL.replace(kept_samples=100)) == 1


def test_config_checks():
    with pytest.raises(ConfigError, match="model 'svd'"):
        TrainConfig(model="svd")
    with pytest.raises(ConfigError, match="must exceed burn_in"):
        TrainConfig(model="bayesian-mf", epochs=10, burn_in=10)
    bayesian = {"model": "bayesian-mf", "epochs": 100}
    with pytest.raises(ConfigError, match="factors"):
        TrainConfig(factors=0, **bayesian)
    with pytest.raises(ConfigError, match="noise_scales"):
        TrainConfig(noise_scales=-1.0, **bayesian)
    with pytest.raises(ConfigError, match="ensemble_weights"):
        TrainConfig(ensemble_weights="best", members=("item",))


def test_fit_weights_recovers_a_mix_and_reports_a_cross_fitted_rmse():
    rng = np.random.default_rng(3)
    members = rng.normal(3.0, 1.0, size=(2000, 3))
    truth = 0.7 * members[:, 0] + 0.3 * members[:, 1]
    weights, crossed, in_sample = fit_weights(members, truth, (-10.0, 10.0))
    np.testing.assert_allclose(weights, [0.7, 0.3, 0.0], atol=1e-6)
    assert crossed < 1e-6 and in_sample < 1e-6
    noisy = truth + rng.normal(scale=0.5, size=len(truth))
    weights, crossed, in_sample = fit_weights(members, noisy, (-10.0, 10.0))
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0, abs=0.05)
    assert crossed >= in_sample  # scored on ratings the weights were not fitted on
    # not normalised: a blend that averaging shrinks towards 0 is stretched back
    weights, _, _ = fit_weights(0.5 * members, truth, (-10.0, 10.0))
    np.testing.assert_allclose(weights, [1.4, 0.6, 0.0], atol=1e-6)


def test_ensemble_with_fitted_weights(lowrank_dir, tmp_path):
    member = tmp_path / "bmf.toml"
    SMALL.replace(epochs=30).save_toml(member)
    user = tmp_path / "user.toml"
    USER_MEMBER.replace(epochs=10).save_toml(user)
    config = TrainConfig(members=(str(member), str(user)), ensemble_weights="fitted",
                         threads=1)
    result = train(lowrank_dir, tmp_path / "ens", config)
    ensemble = load_checkpoint(result.best_checkpoint).model
    assert isinstance(ensemble, Ensemble) and isinstance(ensemble.members[0], BayesianMF)
    fitted = result.notes["weights"]["fitted"]
    np.testing.assert_allclose(ensemble.weights.numpy(), fitted, atol=1e-4)
    rows = (tmp_path / "ens" / "members.csv").read_text().splitlines()
    assert rows[0].split(",")[5] == "weight"
    assert [float(r.split(",")[5]) for r in rows[1:]] == pytest.approx(fitted, abs=1e-4)
    assert ensemble.normalise is False
    assert result.best_val_rmse >= result.notes["weights"]["validation_rmse_in_sample"] - 1e-9
