"""Seeds: one derivation of independent random streams from a base seed and a key."""

from __future__ import annotations

import zlib

import numpy as np
import torch

MAX_SEED = 2**63 - 1  # numpy, torch and Ray all accept seeds below 2**63
#: NumPy's legacy generator (seeded by ``pyro.set_rng_seed`` and TensorLy) takes seeds < 2**32.
LEGACY_SEED_BOUND = 2**32


def derive_seed(seed: int, *key) -> int:
    """A seed for one named stream of a run, stable across runs, machines and Python versions.

    Parameters
    ----------
    seed : int
        The run's base seed.
    *key
        What the stream is for: a name (``"init"``, ``"feedback"``), a task's settings, a
        chain-group index. Each part is hashed through its ``str``.

    Returns
    -------
    int
        A seed in ``[0, 2**63 - 1)``. Different keys give statistically independent streams
        (NumPy's ``SeedSequence``), so, e.g., a learner seeded ``s`` never reuses the random
        numbers of the problem instance drawn with ``s``.
    """
    entropy = [int(seed)] + [zlib.crc32(str(k).encode()) for k in key]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] % MAX_SEED)


def rng(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed))


def legacy_seed(seed: int) -> int:
    """A seed in ``[0, 2**32)`` for ``pyro.set_rng_seed``, TensorLy and NumPy's legacy generator.

    Seeds below 2**32 are unchanged; a larger one (the package takes any seed up to
    :data:`MAX_SEED`, such as the 63-bit task seeds of ``parallel.sweep``) is reduced modulo
    2**32, as torch's CPU generator does itself (it keeps the low 32 bits of its seed).
    """
    return int(seed) % LEGACY_SEED_BOUND
