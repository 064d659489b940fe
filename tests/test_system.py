"""What the machine offers this process, and the thread-pool guard of the Gibbs sweeps.

Guards against: a core count of zero; NumPy's BLAS left multi-threaded inside a sweep (its
spinning threads slowed Bayesian MF chains 2.4×) or left single-threaded after it (EASE and
the ranking head want every core).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

from aerec.system import available_cores, serial_blas


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_available_cores_is_at_least_one():
    assert available_cores() >= 1


def test_serial_blas_runs_blas_on_one_thread_and_restores_it():
    np.ones((4, 4)) @ np.ones((4, 4))  # NumPy's BLAS is loaded
    before = _blas_threads()
    assert before, "NumPy's BLAS is not visible to threadpoolctl"
    with serial_blas():
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before
