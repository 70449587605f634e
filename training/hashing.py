"""Categorical value -> table row. Mirrors the server exactly (see docs/bundle-format.md)."""
from __future__ import annotations

import bisect

from sklearn.utils import murmurhash3_32


def hash_row(value: str | None, seed: int, rows: int) -> int:
    if value is None or value == "":
        return 0
    if not isinstance(value, str):
        raise TypeError(f"categorical values must be strings, got {type(value).__name__}")
    return 1 + murmurhash3_32(value, seed=seed, positive=True) % (rows - 1)


def numeric_row(x: float | None, edges: list[float]) -> int:
    if x is None:
        return 0
    return 1 + bisect.bisect_right(edges, float(x))


def equal_frequency_edges(values, bins: int) -> list[float]:
    import numpy as np

    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    qs = np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(e) for e in np.unique(qs)]
