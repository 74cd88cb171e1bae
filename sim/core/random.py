"""Counter-based random streams for the compiled core, carried as explicit state.

Each named stream of a patient is one row of a ``uint64`` array ``rs``: a 64-bit key, a
counter and a mode. Draw ``k`` of a stream is the SplitMix64 output function (Steele, Lea
& Flood 2014, OOPSLA; the generator of Java's ``SplittableRandom``, which passes BigCrush)
of ``key + k * golden``: a counter-based generator, so a draw depends only on (key,
counter). The key comes from :func:`sim.rng.seed_sequence` (root seed, patient, stream
name), so patient ``i`` draws the same numbers whatever the workers, the batch or the
other arms, and no kernel touches numba's global generator. Philox4x32-10 was the first
choice; in numba it cost 20 ns a block on this machine against under 1 ns for this one.

Counts are drawn by a **hybrid** rule on the expected number of events ``m = n p`` (or
``n (1 - p)``, whichever is smaller):

* ``m < EXACT_BELOW`` (20): exact, by inversion. Extinction, MRD and relapse from a few
  cells, and every draw on a small agent, are exact.
* ``m < NORMAL_BELOW`` (1e4): the normal approximation with the same mean and variance,
  rounded and clipped to ``[0, n]`` (error of order ``1/sqrt(m)`` in the tails).
* above: the mean with stochastic rounding (``floor(m + U)``). The binomial standard
  deviation is then below 1% of the mean and is dropped; this is the path of the
  super-individuals of millions of cells, and it costs one uniform.

A stream in ``EXACT`` mode draws every count exactly (large ones from numba's binomial,
seeded from the stream at the start of each kernel): the reference the hybrid rule is
tested against (``tests/test_hybrid.py``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim import rng

#: Expected events per draw below which counts are drawn exactly (inversion).
EXACT_BELOW = 20.0
#: Expected events per draw above which the mean is taken with stochastic rounding.
NORMAL_BELOW = 1e4

#: The kernel streams of a patient, one row of ``rs`` each (order fixes the row).
STREAMS = ("resample", "engage", "car_t", "blasts", "hematopoiesis", "traffic", "infection", "gvhd")
S_RESAMPLE, S_ENGAGE, S_CAR_T, S_BLASTS, S_HEMATOPOIESIS, S_TRAFFIC, S_INFECTION, S_GVHD = range(len(STREAMS))

KEY, COUNTER, MODE = 0, 1, 2
HYBRID, EXACT = 0, 1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)

# Acklam's rational approximation of the normal quantile (relative error < 1.2e-9)
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def new_state(root_seed: int, patient_index: int, suffix: str = "", exact: bool = False) -> np.ndarray:
    """The stream state of one patient: one row (key, counter, mode) per name of ``STREAMS``.

    ``suffix`` selects a stochastic replicate (``".1"``, ...); ``exact`` draws every count exactly.
    """
    rs = np.zeros((len(STREAMS), 3), np.uint64)
    for i, name in enumerate(STREAMS):
        rs[i, KEY] = rng.kernel_stream_seed(root_seed, patient_index, f"kernel.{name}{suffix}")
        rs[i, MODE] = EXACT if exact else HYBRID
    return rs


@njit(cache=True)
def mix64(z):
    """The SplitMix64 output function (a bijection of 64-bit words)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def uniform(rs, s):
    """A uniform draw in [0, 1) with 53 random bits from stream row ``s``."""
    k = rs[s, COUNTER] + np.uint64(1)
    rs[s, COUNTER] = k
    return float(mix64(rs[s, KEY] + k * _GOLDEN) >> np.uint64(11)) * 2.0**-53


@njit(cache=True)
def normal_quantile(u):
    """The standard normal quantile of ``u`` in (0, 1) (Acklam's algorithm)."""
    if u < 0.02425:
        q = math.sqrt(-2.0 * math.log(u))
        num = ((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]
        return num / ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0)
    if u > 0.97575:
        return -normal_quantile(1.0 - u)
    q = u - 0.5
    r = q * q
    num = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
    return num / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)


@njit(cache=True, inline="always")
def normal(rs, s):
    """A standard normal draw (by inversion: one uniform a draw)."""
    return normal_quantile(max(uniform(rs, s), 2.0**-54))


@njit(cache=True)
def _binomial_from_uniform(u, n, p, exact):
    """Binomial(n, p), p <= 1/2, from one uniform ``u`` (exact mode: numba's generator above ``EXACT_BELOW``)."""
    mean = n * p
    if n == 1.0:
        return 1.0 if u < p else 0.0
    if mean < EXACT_BELOW:
        if u < 1.0 - mean:  # (1 - p)^n >= 1 - n p (Bernoulli's inequality): no event, without exp/log
            return 0.0
        f = math.exp(n * math.log1p(-p))  # inversion: sequential search from 0
        k = 0.0
        while u > f and k < n:
            u -= f
            k += 1.0
            f *= (n - k + 1.0) / k * p / (1.0 - p)
            if f <= 0.0:
                break
        return k
    if exact:
        return float(np.random.binomial(np.int64(n), p))
    if mean < NORMAL_BELOW:
        k = math.floor(mean + math.sqrt(mean * (1.0 - p)) * normal_quantile(max(u, 2.0**-54)) + 0.5)
        return min(max(k, 0.0), n)
    return math.floor(mean + u)


@njit(cache=True, inline="always")
def binomial(rs, s, n, p):
    """Binomial(n, p) on an integer-valued float count (a super-individual's weight), by the hybrid rule.

    Inlined into the kernels; the draw itself takes one uniform and no array, so the common
    path (stochastic rounding) costs a few nanoseconds.
    """
    if n <= 0.0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return n
    small = p <= 0.5
    q = p if small else 1.0 - p
    k = _binomial_from_uniform(uniform(rs, s), n, q, rs[s, MODE] == EXACT)
    return k if small else n - k


@njit(cache=True)
def _poisson_from_uniform(u, lam, exact):
    """Poisson(lam) from one uniform ``u`` (exact mode: numba's generator above ``EXACT_BELOW``)."""
    if lam < EXACT_BELOW:
        f = math.exp(-lam)
        k = 0.0
        while u > f:
            u -= f
            k += 1.0
            f *= lam / k
            if f <= 0.0:
                break
        return k
    if exact:
        return float(np.random.poisson(lam))
    if lam < NORMAL_BELOW:
        return max(math.floor(lam + math.sqrt(lam) * normal_quantile(max(u, 2.0**-54)) + 0.5), 0.0)
    return math.floor(lam + u)


@njit(cache=True, inline="always")
def poisson(rs, s, lam):
    """Poisson(lam) by the hybrid rule."""
    if lam <= 0.0:
        return 0.0
    return _poisson_from_uniform(uniform(rs, s), lam, rs[s, MODE] == EXACT)


@njit(cache=True)
def begin(rs, s):
    """Start a kernel on stream ``s``: in ``EXACT`` mode, seed numba's generator from the stream."""
    if rs[s, MODE] == EXACT:
        np.random.seed(np.uint32(uniform(rs, s) * 4294967296.0))
