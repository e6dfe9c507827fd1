"""Full-jitter backoff (configctl.core.backoff)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configctl.core.backoff import backoff


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=100),
    cap=st.floats(min_value=0.001, max_value=3600),
    seed=st.integers(),
)
def test_within_bounds(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt, 64))


def test_window_grows_then_caps() -> None:
    class Top:
        def uniform(self, a: float, b: float) -> float:
            return b

    top = Top()
    assert [backoff(n, base=0.5, cap=10, rng=top) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_deterministic_with_seed() -> None:
    a = [backoff(n, base=1, cap=60, rng=random.Random(7)) for n in range(5)]
    b = [backoff(n, base=1, cap=60, rng=random.Random(7)) for n in range(5)]
    assert a == b


def test_jitter_spreads() -> None:
    rng = random.Random(1)
    delays = {round(backoff(5, base=1, cap=60, rng=rng), 3) for _ in range(50)}
    assert len(delays) > 40


@pytest.mark.parametrize(
    ("attempt", "base", "cap"),
    [(-1, 1, 1), (0, 0, 1), (0, 1, 0), (0, float("inf"), 1), (0, 1, float("nan"))],
)
def test_rejects_bad_input(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"attempt|base"):
        backoff(attempt, base=base, cap=cap, rng=random.Random(0))
