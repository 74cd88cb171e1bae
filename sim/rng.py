"""Named random streams.

Every random draw belongs to a stream named by where it is used (``"patient.weight"``,
``"blast.divide"``). A stream's seed is derived from the root seed, the patient index and
a stable hash of the name through :class:`numpy.random.SeedSequence`, so patient ``i`` of a
cohort gets the same draws whatever the number of workers or the other arms, and a
change in one stream leaves the others untouched (common random numbers).
"""

from __future__ import annotations

import zlib

import numpy as np


def name_key(name: str) -> int:
    """A stable 32-bit key for a stream name (CRC-32, independent of ``PYTHONHASHSEED``)."""
    return zlib.crc32(name.encode())


def seed_sequence(root_seed: int, patient_index: int, name: str) -> np.random.SeedSequence:
    """The seed sequence of stream ``name`` for one patient."""
    return np.random.SeedSequence(int(root_seed), spawn_key=(int(patient_index), name_key(name)))


def generator(root_seed: int, patient_index: int, name: str) -> np.random.Generator:
    """A NumPy generator for stream ``name`` of one patient."""
    return np.random.Generator(np.random.PCG64(seed_sequence(root_seed, patient_index, name)))


def kernel_stream_seed(root_seed: int, patient_index: int, name: str) -> np.uint64:
    """The 64-bit base seed of a numba kernel's stream; kernels mix in the step number."""
    return np.uint64(seed_sequence(root_seed, patient_index, name).generate_state(1, np.uint64)[0])
