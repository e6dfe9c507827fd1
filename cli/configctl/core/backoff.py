"""Capped exponential backoff with full jitter.

``delay = uniform(0, min(cap, base * 2**attempt))`` -- the "full jitter" variant, which
spreads retries of many replicas (or many SDK clients after a broker restart) over the
whole window instead of letting them retry in lockstep. Randomness is an input (STYLE.md
§8): pass a seeded ``random.Random`` in tests.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["UniformSource", "backoff"]

# 2**64 * any sane base is far beyond any cap; stopping the exponent here keeps the
# float arithmetic finite for absurd attempt counts instead of raising OverflowError.
_MAX_EXPONENT = 64


class UniformSource(Protocol):
    """The part of ``random.Random`` used here."""

    def uniform(self, a: float, b: float, /) -> float: ...


def backoff(attempt: int, *, base: float, cap: float, rng: UniformSource) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Always within ``[0, min(cap, base * 2**attempt)]``. ``base`` and ``cap`` are seconds
    and must be positive and finite; ``attempt`` must be >= 0.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not (math.isfinite(base) and math.isfinite(cap)) or base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive, finite seconds")
    ceiling = min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))
    delay = rng.uniform(0.0, ceiling)
    # random.uniform may return b itself (rounding); clamp so the documented bound holds.
    return min(max(delay, 0.0), ceiling)
