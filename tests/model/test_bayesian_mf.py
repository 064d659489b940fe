"""The Bayesian factorisation's prediction API: its encoder is the exact Gaussian posterior mean
of a user's vector, its predictions average the kept samples, and it round-trips through a
checkpoint's architecture.

Guards against: an encoder that is not the posterior the sampler draws from (wrong precision,
shift, mean offset or movie noise scales); ``predict_at`` / ``predict_dense`` / ``predict_known`` disagreeing;
predictions that ignore some samples; a model that cannot be rebuilt from its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aerec.model import BayesianMF, model_from_architecture

N_MOVIES, D, S = 12, 3, 4


def _model(clip=None) -> BayesianMF:
    rng = np.random.default_rng(0)
    model = BayesianMF(N_MOVIES, D, S, clip=clip)
    a = rng.normal(size=(S, D, D))
    precision = a @ a.transpose(0, 2, 1) + 2 * np.eye(D)
    model.set_samples(rng.normal(size=(S, N_MOVIES, D)), rng.normal(size=(S, D)), precision,
                      global_mean=3.5, noise_precision=1.7)
    return model


def _users():
    """Two users: ratings of movies (1, 4, 7) and (0, 11)."""
    return np.array([0, 3, 5]), np.array([1, 4, 7, 0, 11]), np.array([5.0, 2.0, 4.0, 1.0, 3.0])


def test_encoder_is_the_gaussian_posterior_mean():
    model = _model()
    indptr, indices, values = _users()
    got = model.user_vectors(model._inputs(indptr, indices, values)).numpy()
    alpha = 1.7
    for s in range(S):
        v = model.movie_factors[s].numpy()
        lam, mu = model.user_precision[s].numpy(), model.user_mean[s].numpy()
        for u in range(2):
            rows = slice(indptr[u], indptr[u + 1])
            vr = v[indices[rows]]
            precision = lam + alpha * vr.T @ vr
            rhs = lam @ mu + alpha * vr.T @ (values[rows] - 3.5)
            np.testing.assert_allclose(got[s, u], np.linalg.solve(precision, rhs), rtol=1e-10)


def test_encoder_weighs_each_movie_by_its_noise_scale():
    """With robust noise a rating of movie m counts with precision α γ_m (the user's own scale
    is unknown when scoring, so it is the prior's 1)."""
    model = _model()
    rng = np.random.default_rng(5)
    scales = rng.gamma(2.0, 0.5, size=(S, N_MOVIES))
    model.set_samples(model.movie_factors.numpy(), model.user_mean.numpy(),
                      model.user_precision.numpy(), 3.5, 1.7, scales)
    indptr, indices, values = _users()
    got = model.user_vectors(model._inputs(indptr, indices, values)).numpy()
    for s in range(S):
        v = model.movie_factors[s].numpy()
        lam, mu = model.user_precision[s].numpy(), model.user_mean[s].numpy()
        for u in range(2):
            rows = slice(indptr[u], indptr[u + 1])
            vr, w = v[indices[rows]], 1.7 * scales[s, indices[rows]]
            precision = lam + (vr * w[:, None]).T @ vr
            rhs = lam @ mu + (vr * w[:, None]).T @ (values[rows] - 3.5)
            np.testing.assert_allclose(got[s, u], np.linalg.solve(precision, rhs), rtol=1e-10)
    # unequal scales change the scores; all-ones scales are the classic model
    plain = _model()
    assert not torch.allclose(model.predict_dense(indptr, indices, values),
                              plain.predict_dense(indptr, indices, values))


def test_checkpoints_without_noise_scales_still_load():
    model = _model()
    state = {k: v for k, v in model.state_dict().items() if k != "movie_noise"}
    rebuilt = BayesianMF(N_MOVIES, D, S)
    rebuilt.load_state_dict(state)
    np.testing.assert_array_equal(rebuilt.movie_noise.numpy(), np.ones((S, N_MOVIES)))
    indptr, indices, values = _users()
    torch.testing.assert_close(rebuilt.predict_dense(indptr, indices, values),
                               model.predict_dense(indptr, indices, values))


def test_a_user_without_ratings_gets_the_prior_mean():
    model = _model()
    got = model.user_vectors(model._inputs(np.array([0, 0]), np.array([], np.int64),
                                           np.array([]))).numpy()
    np.testing.assert_allclose(got[:, 0], model.user_mean.numpy(), rtol=1e-10)


def test_predictions_average_every_sample_and_agree_across_the_api():
    model = _model()
    indptr, indices, values = _users()
    users = model.user_vectors(model._inputs(indptr, indices, values)).numpy()
    expected = np.mean(
        [users[s] @ model.movie_factors[s].numpy().T for s in range(S)], axis=0
    ) + 3.5
    dense = model.predict_dense(indptr, indices, values)
    assert dense.dtype == torch.float32 and dense.shape == (2, N_MOVIES)
    np.testing.assert_allclose(dense.numpy(), expected, rtol=1e-5)
    rows, cols = np.array([1, 0, 1, 0]), np.array([3, 3, 11, 0])
    at = model.predict_at(indptr, indices, values, rows, cols)
    np.testing.assert_allclose(at.numpy(), expected[rows, cols], rtol=1e-5)
    known = model.predict_known(np.array([7, 8]), indptr, indices, values)
    np.testing.assert_allclose(known.numpy(), dense.numpy())
    code, predicted = model.code_and_predict(indptr, indices, values)
    np.testing.assert_allclose(code.numpy(), users[-1], rtol=1e-5)
    np.testing.assert_allclose(model.encode(indptr, indices, values).numpy(), code.numpy())
    with pytest.raises(IndexError):
        model.predict_at(indptr, indices, values, np.array([2]), np.array([0]))


def test_clip_and_round_trip_through_the_architecture():
    model = _model(clip=(1.0, 5.0))
    indptr, indices, values = _users()
    dense = model.predict_dense(indptr, indices, values)
    assert float(dense.min()) >= 1.0 and float(dense.max()) <= 5.0
    rebuilt = model_from_architecture(model.architecture())
    rebuilt.load_state_dict(model.state_dict())
    assert isinstance(rebuilt, BayesianMF) and rebuilt.clip == (1.0, 5.0)
    torch.testing.assert_close(rebuilt.predict_dense(indptr, indices, values), dense)


def test_set_samples_checks_shapes():
    model = BayesianMF(N_MOVIES, D, S)
    with pytest.raises(ValueError, match="movie_factors"):
        model.set_samples(np.zeros((S, N_MOVIES, D + 1)), np.zeros((S, D)),
                          np.zeros((S, D, D)), 3.0, 1.0)
    with pytest.raises(ValueError, match="movie_noise"):
        model.set_samples(np.zeros((S, N_MOVIES, D)), np.zeros((S, D)),
                          np.zeros((S, D, D)), 3.0, 1.0, np.ones((S, N_MOVIES + 1)))


def test_new_samples_are_used_at_once():
    """Predictions cache the samples' stacked factors; new samples must replace them."""
    model = _model()
    indptr, indices, values = _users()
    before = model.predict_dense(indptr, indices, values)
    model.set_samples(model.movie_factors.numpy() * 2, model.user_mean.numpy(),
                      model.user_precision.numpy(), 3.5, 1.7)
    after = model.predict_dense(indptr, indices, values)
    assert not torch.allclose(before, after)
    fresh = BayesianMF(N_MOVIES, D, S)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.predict_dense(indptr, indices, values), after)


def test_small_batches_solve_without_the_compiled_kernel_to_the_same_answer(monkeypatch):
    """A few users (one ``aerec recommend``) are solved with PyTorch, more with the Numba
    kernel: both are the same posterior mean; ``encode`` solves only the last sample."""
    import aerec.model.bayesian_mf as bayesian_mf

    model = _model()
    inputs = model._inputs(*_users())
    small = model.user_vectors(inputs)
    monkeypatch.setattr(bayesian_mf, "SMALL_BATCH", 0)
    compiled = model.user_vectors(inputs)
    np.testing.assert_allclose(small.numpy(), compiled.numpy(), rtol=1e-10, atol=1e-12)
    last = model.user_vectors(inputs, [S - 1])
    np.testing.assert_array_equal(last[0].numpy(), compiled[-1].numpy())
    code = model.code_and_predict(*_users())[0]
    np.testing.assert_array_equal(model.encode(*_users()).numpy(), code.numpy())
