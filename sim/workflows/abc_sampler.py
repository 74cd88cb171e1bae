"""A pyabc sampler whose populations do not depend on the number of workers.

pyabc's parallel samplers keep whichever particles finish first, so a posterior depends
on timing. Here particle ``i`` of generation ``t`` draws from its own seed ``(seed, t, i)``
and results are kept in particle order, so any ordered ``map`` (built-in, a process pool,
a Dask client) gives the same population.
"""

from __future__ import annotations

import functools
import random

import numpy as np
from pyabc.sampler import MappingSampler


class SeededMappingSampler(MappingSampler):
    """pyabc's MappingSampler with particle ``i`` of generation ``t`` seeded from (seed, t, i)."""

    def __init__(self, map_, seed: int):
        super().__init__(map_=map_)
        self.seed = seed

    def __getstate__(self):
        return (*super().__getstate__(), self.seed)

    def __setstate__(self, state):
        *base, self.seed = state
        super().__setstate__(tuple(base))

    def map_function(self, simulate_one, particle_seed):
        """Sample (in a worker) until one particle is accepted, drawing from ``particle_seed``."""
        simulate_one = self.unpickle(simulate_one)
        np.random.seed(particle_seed)
        random.seed(particle_seed)
        nr_simulations, sample = 0, self._create_empty_sample()
        while True:
            new_sim = simulate_one()
            nr_simulations += 1
            sample.append(new_sim)
            if new_sim.accepted:
                return sample, nr_simulations

    def sample_until_n_accepted(self, n, simulate_one, t, *, max_eval=np.inf, all_accepted=False, ana_vars=None):
        """Accept ``n`` particles of generation ``t``: one seeded map task per particle, kept in order."""
        seeds = np.random.SeedSequence([self.seed, t + 1]).generate_state(n).tolist()
        fn = functools.partial(self.map_function, self.pickle(simulate_one))
        results = list(self.map_(fn, seeds))
        self.nr_evaluations_ = sum(r[1] for r in results)
        sample = self._create_empty_sample()
        for r in results:
            sample += r[0]
        return sample
