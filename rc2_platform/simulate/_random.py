"""Deterministic random streams: one independent generator per (seed, component, keys).

Every random number of a simulated survey comes from :func:`rng_for`, keyed by what it
is for (e.g. ``("raw", visit, detector)``), so the result does not depend on the order
in which things are generated, on parallelism, or on which tracts were requested.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key_int(key: int | str) -> int:
    if isinstance(key, int):
        if key < 0:
            raise ValueError(f"random stream keys must be non-negative, got {key}")
        return key
    return zlib.crc32(key.encode())


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """Return a numpy Generator determined only by ``seed`` and ``keys``.

    Parameters
    ----------
    seed
        The survey's ``--seed``.
    *keys
        Strings and non-negative integers naming the stream, e.g. ``"raw", 1228, 49``.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, *(_key_int(k) for k in keys)]))
