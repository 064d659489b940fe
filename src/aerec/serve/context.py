"""What the routes of one app share (:class:`ServeContext`): the recommender, the limits in
force and the model thread pool (:class:`ModelCalls`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from aerec.recommend import Recommender
from aerec.serve.answers import JSONAnswer, recommender_error


def _to_dict(result: Any) -> Any:
    return result.to_dict()


def _answer(
    fn: Callable[..., Any], args: tuple, kwargs: dict, to_json: Callable[[Any], Any]
) -> JSONAnswer:
    """Call the recommender and render the answer (JSON encoding included), or its refusal."""
    try:
        result = fn(*args, **kwargs)
    except ValueError as exc:
        return recommender_error(exc)
    return JSONAnswer(to_json(result))


class ModelCalls:
    """Recommender calls in the model thread pool, at most ``threads`` at once, so concurrent
    requests overlap torch work (which releases the GIL) without dozens of threads fighting
    over the GIL. The event loop stays free for other requests (``/health`` answers while
    models run)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        # one limiter per event loop (an app may be driven by several, e.g. in tests)
        self._limiter: RunVar[anyio.CapacityLimiter | None] = RunVar(
            "aerec_model_limiter", default=None
        )

    async def __call__(
        self, fn: Callable[..., Any], *args: Any, to_json: Callable[[Any], Any] = _to_dict,
        **kwargs: Any,
    ) -> JSONAnswer:
        """``fn(*args, **kwargs)`` and its JSON answer (``to_json`` of the result, default
        its ``to_dict()``), or the refusal's 4xx answer."""
        current = self._limiter.get()
        if current is None:
            current = anyio.CapacityLimiter(self.threads)
            self._limiter.set(current)
        call = functools.partial(_answer, fn, args, kwargs, to_json)
        return await anyio.to_thread.run_sync(call, limiter=current)


@dataclass(frozen=True)
class ServeContext:
    """One app's recommender and limits (see :func:`aerec.serve.app.create_app`), handed to
    every router and kept as ``app.state.context``."""

    recommender: Recommender
    model_call: ModelCalls
    max_ratings: int
    max_k: int
    max_body_bytes: int
    #: Requests answered at once (``None``: no limit).
    max_in_flight: int | None


__all__ = ["ModelCalls", "ServeContext"]
