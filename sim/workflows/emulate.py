"""Bayesian fit with Gaussian-process emulators of the reported counts, and its leave-one-study-out check.

ABC-SMC needs thousands of cohort simulations per generation; this fit needs one design.

1. Design: a scrambled Sobol sample of the prior box (``scipy.stats.qmc``), ``design_points``
   parameter sets.
2. Runs: at every design point each reported arm of the chosen target sets is simulated with
   the same ``n_patients`` virtual patients (common random numbers), giving the simulated count
   of every reported metric. Each finished point is kept in ``OUT/points/<i>.json``: a rerun
   skips it, so a kill loses only the points in flight.
   With ``refine_points``, a second wave of that many points is drawn from the stage-1 posterior
   (below) and simulated the same way (``OUT/points-refine-<n>/``), and every emulator is refitted
   on both waves before the fit goes on: the refocusing of history matching.
3. Emulators: per metric, a Gaussian process (scikit-learn) of the logit of the simulated rate
   over the unit-cube coordinates, given each point's binomial noise of ``n_patients`` as known
   (stochastic kriging) plus a fitted white level; predictions carry the GP's uncertainty
   about the expected rate, not that noise. ``sim.workflows.emulator_check`` scores held-out
   design points against them.
4. Posterior: ``posterior_draws`` draws weighted by the likelihood of the reported counts
   (binomial, the rate integrated over the emulator's uncertainty on the logit scale by
   Gauss-Hermite quadrature): tempered sequential Monte Carlo on the emulators finds the
   posterior, and importance sampling from a Gaussian mixture fitted to its particles weighs the
   draws, reported with its effective sample size.
   Metrics of one arm are treated as independent, which overstates the information when an arm
   reports nested counts (any CRS and CRS grade 3 or higher).
5. A second method on the same design: history matching (Vernon et al. 2010, Bayesian
   Analysis 5:619), which keeps with equal weight the draws whose second-largest implausibility
   (emulated against reported logit rate, over the emulator's and the count's sd) is at most 3,
   instead of weighting them by the likelihood.
6. Predictions: each count's posterior predictive (a binomial mixed over the weighted draws and
   the emulator's uncertainty), in sample and leave one study out: the weights without the
   left-out study group's counts, for both methods. The emulators never see observed data, so
   leaving a study out needs no new simulation. The method with more left-out counts inside
   (then the narrower intervals) gives the posterior and ``calibrated.yaml``, among those with
   at least ``MIN_EFFECTIVE_DRAWS`` effective draws.
7. Sensitivity and identification: first-order and total Sobol indices (SALib) of every emulated
   rate over the prior box, and each parameter's posterior contraction (stage 1: every parameter
   free). A parameter is identified when its total index reaches ``INERT_TOTAL_INDEX`` on some
   count and the counts remove at least ``MIN_CONTRACTION`` of its prior variance (the variance the
   behaviour prior leaves, so narrowing by the behaviours alone does not count).
8. Stage 2: the posterior of the identified parameters with the others held at their sourced
   defaults (a coherent point: the marginal medians of a correlated posterior, some replaced by
   defaults, need not fit). Its predictions, coverage and medians are what the fit reports and
   ``calibrated.yaml`` holds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sim.errors import UserError, spec_error
from sim.params import PARAMETERS
from sim.workflows import constraints
from sim.workflows.calibrate import Prior, prior_range, simulate
from sim.workflows.constraints import Constraint

#: Gauss-Hermite nodes for the integral of the binomial likelihood over the emulated logit.
GH_NODES, GH_WEIGHTS = np.polynomial.hermite.hermgauss(12)
#: Predictive draws per count.
PREDICTIVE_DRAWS = 4000


class EmulatorSpec(BaseModel):
    """What to fit, to which target sets, with which design."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1)
    description: str = ""
    method: Literal["emulator"] = "emulator"
    parameters: dict[str, Prior] = Field(min_length=1)
    targets: list[Literal["calibration", "training"]] = Field(["calibration", "training"], min_length=1)
    n_patients: int = Field(30, ge=2, le=10_000, description="virtual patients per arm per design point")
    design_points: int = Field(64, ge=4, le=65_536, description="Sobol points of the prior box: a power of 2 (balanced)")
    posterior_draws: int = Field(20_000, ge=100, le=10_000_000)
    set: dict[str, float | int | str | bool | None] = Field({}, description="dotted paths set in every scenario (null: off)")
    scenarios: str = Field(
        "..", description="the scenarios folder (whose training/ holds the training arms), relative to the spec"
    )
    seed: int = Field(0, ge=0)
    constraints: dict[str, Constraint] = Field({}, description="behaviours the fit must keep (sim.workflows.constraints)")
    constraint_patients: int = Field(32, ge=2, le=10_000, description="virtual patients per constraint per design point")
    refine_points: int = Field(
        0, ge=0, le=65_536, description="design points of a second wave, drawn from the first wave's posterior (0: none)"
    )

    @field_validator("design_points")
    @classmethod
    def _power_of_two(cls, n: int) -> int:
        if n & (n - 1):
            raise ValueError(f"a power of 2 (Sobol points are balanced only then), e.g. {1 << n.bit_length()}")
        return n


@dataclass(frozen=True)
class Metric:
    """One reported count and where it comes from."""

    study: str
    arm: str
    group: str
    target_set: str
    metric: str
    reported: int
    n: int


def load_emulator_spec(path: Path) -> EmulatorSpec:
    """Load and check an emulator spec; every problem is a :class:`UserError`."""
    from sim.scenario import read_yaml_mapping

    try:
        spec = EmulatorSpec.model_validate(read_yaml_mapping(path))
    except ValidationError as e:
        raise spec_error(e, str(path), list(EmulatorSpec.model_fields)) from None
    for name, prior in spec.parameters.items():
        if name not in PARAMETERS:
            raise UserError(str(path), f"parameters.{name}", name, "a parameter name of sim.params (`cart-sim params`)")
        bounds = prior_range(name, prior)
        if bounds is None:
            raise UserError(str(path), f"parameters.{name}.range", None, "a prior range (this parameter has none)")
        if not bounds[0] <= PARAMETERS[name].value <= bounds[1]:  # stage 2 holds a parameter at its default
            expected = f"a range that holds the default {PARAMETERS[name].value:g}"
            raise UserError(str(path), f"parameters.{name}.range", list(bounds), expected)
    for name, c in spec.constraints.items():
        if not (path.parent / spec.scenarios / c.scenario).is_file():
            raise UserError(str(path), f"constraints.{name}.scenario", c.scenario, "a scenario file under the spec's scenarios")
    return spec


def reported_counts(spec: EmulatorSpec, scenario_root: Path) -> tuple[list, list[Metric]]:
    """The arms' scenarios (JSON) and their reported metrics, over the spec's target sets."""
    from sim.workflows.validate import SCENARIO_DIRS, arm_cohorts, outcome_rule, target_set

    sets = overrides(spec)
    arms, metrics = [], []
    for targets in spec.targets:
        groups = {s["id"]: s.get("group", s["id"]) for s in target_set(targets)["studies"]}
        folder = scenario_root / SCENARIO_DIRS[targets].relative_to("scenarios")
        for (study, arm), (sc, n, reported) in arm_cohorts(folder, None, sets, targets).items():
            modelled = [(m, c) for m, c in reported if outcome_rule(m) is not None]
            if not modelled:
                continue
            arms.append(sc.model_dump_json())
            metrics += [Metric(study, arm, groups[study], targets, m, int(c), int(n)) for m, c in modelled]
    return arms, metrics


def overrides(spec: EmulatorSpec) -> list[str]:
    """The spec's ``set`` as ``--set`` strings."""
    return [f"{k}={'null' if v is None else v}" for k, v in spec.set.items()]


def design(spec: EmulatorSpec) -> np.ndarray:
    """Unit-cube design points, shape (design_points, parameters): scrambled Sobol, seeded."""
    from scipy.stats import qmc

    return qmc.Sobol(len(spec.parameters), scramble=True, seed=spec.seed).random(spec.design_points)


def to_values(spec: EmulatorSpec, unit: np.ndarray) -> np.ndarray:
    """Unit-cube coordinates -> parameter values (uniform, or log-uniform for ``scale: log``)."""
    out = np.empty_like(unit)
    for j, (name, prior) in enumerate(spec.parameters.items()):
        lo, hi = prior_range(name, prior)
        if prior.scale == "log":
            out[:, j] = 10.0 ** (math.log10(lo) + unit[:, j] * (math.log10(hi) - math.log10(lo)))
        else:
            out[:, j] = lo + unit[:, j] * (hi - lo)
    return out


def to_unit(spec: EmulatorSpec, values: np.ndarray) -> np.ndarray:
    """Parameter values -> unit-cube coordinates: the inverse of :func:`to_values`."""
    return np.column_stack([_unit(spec, name, values[:, j]) for j, name in enumerate(spec.parameters)])


def _unit(spec: EmulatorSpec, name: str, x):
    lo, hi = prior_range(name, spec.parameters[name])
    if spec.parameters[name].scale == "log":
        return (np.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (x - lo) / (hi - lo)


def run_point(payload: tuple, names: list[str], values: list[float], n_patients: int) -> list[int]:
    """Simulated counts (hits among ``n_patients``) of every metric at one design point."""
    rates = simulate(payload, dict(zip(names, values, strict=True)))
    return [round(rates[stat] * n_patients) for _, _, stat in payload[1]]


def _payload(arms: list[str], metrics: list[Metric], n_patients: int) -> tuple:
    """What ``sim.workflows.calibrate.simulate`` needs: arm scenarios, (arm index, metric, key) per metric."""
    index = {}
    rows = []
    for m in metrics:
        k = index.setdefault((m.study, m.arm), len(index))
        rows.append((k, m.metric, f"{m.study}/{m.arm}/{m.metric}"))
    return (arms, rows, n_patients, "trials")


# --------------------------------------------------------------------------- runs


def run_design(
    fn,
    fixed,
    spec: EmulatorSpec,
    unit: np.ndarray,
    n_patients: int,
    folder: Path,
    workers: int = 1,
    scheduler: str | None = None,
    log=print,
) -> np.ndarray:
    """Simulated counts, shape (design points, counts): ``fn(fixed, names, values, n_patients)`` at every point.

    Finished points are read from ``folder/<i>.json``; a rerun simulates only the others.
    """
    from sim.io import write_json
    from sim.parallel import run_tasks

    names = list(spec.parameters)
    values = to_values(spec, unit)
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[int, list[int]] = {}
    for i in range(len(unit)):
        f = folder / f"{i}.json"
        if f.is_file():
            counts[i] = json.loads(f.read_text())["counts"]
    todo = {i: (fixed, names, [float(v) for v in values[i]], n_patients) for i in range(len(unit)) if i not in counts}
    start, done0 = time.monotonic(), len(counts)
    if done0:
        log(f"{done0} of {len(unit)} design points already simulated (kept in {folder})")

    def keep(i, result):
        counts[i] = result
        at = dict(zip(names, values[i].tolist(), strict=True))
        write_json(folder / f"{i}.json", {"point": i, "values": at, "counts": result})
        done = len(counts) - done0
        left = (time.monotonic() - start) / done * (len(todo) - done)
        log(f"{folder.name}: design point {len(counts)}/{len(unit)} done, about {left / 60:.1f} min left")

    run_tasks(fn, todo, workers, scheduler, keep)
    return np.array([counts[i] for i in range(len(unit))], dtype=float).reshape(len(unit), -1)


# --------------------------------------------------------------------------- emulators


class Emulators:
    """One GP per metric of the logit simulated rate over the unit cube; constant where the design never varied.

    Each point's binomial scatter is known, not fitted: it is the variance of the smoothed logit of
    ``n_patients`` draws at the point's own rate, passed to the GP as that point's noise (stochastic
    kriging: Ankenman, Nelson & Staum 2010, Operations Research 58:371). Fitted as one white-noise
    level, the scatter came out far too small on the fit's counts (0.05 on the logit scale for CD33
    post-HSCT CRS grade 2 and 0.0002 for its ICANS grade 0, where 16 patients scatter by 0.25-0.6)
    and the GP chased it with short length scales. With 64 of the fit's design points held out
    (``python -m sim.workflows.emulator_check``), the held-out counts' log score is -4,408 against
    -4,443. A white level stays free for roughness of the expected rate that the RBF kernel misses.
    """

    def __init__(self, unit: np.ndarray, counts: np.ndarray, n_patients: int, seed: int):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        y = _logit((counts + 0.5) / (n_patients + 1.0))  # the Jeffreys-smoothed rate: finite at 0 and n
        d = unit.shape[1]
        self.models: list = []
        self.white_var: list[float] = []  # each GP's fitted white level beyond the binomial, logit units
        for j in range(y.shape[1]):
            if np.ptp(counts[:, j]) == 0:
                # no design point moved this count: the rate is known only to about one patient in n_patients
                self.models.append((float(y[0, j]), 1.0 / math.sqrt(n_patients + 1.0)))
                self.white_var.append(0.0)
                continue
            scale = float(np.std(y[:, j]))  # normalize_y divides y by it, so the noise too
            kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(np.full(d, 0.5), (0.03, 30.0)) + WhiteKernel(1e-3, (1e-6, 2.0))
            alpha = logit_sampling_variance(counts[:, j], n_patients) / scale**2
            gp = GaussianProcessRegressor(kernel, alpha=alpha, normalize_y=True, n_restarts_optimizer=2, random_state=seed)
            with warnings.catch_warnings():  # a length scale or noise at its bound is an answer here, not a failure
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.models.append(gp.fit(unit, y[:, j]))
            self.white_var.append(float(gp.kernel_.k2.noise_level) * scale**2)

    def predict(self, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of the logit of the expected rate, shape (points, metrics) each.

        The sd is the emulator's uncertainty about the expected rate. The binomial scatter of
        simulated patients is not in it (a reported cohort's own binomial carries that; counting
        it twice widened every interval and flattened the likelihood); the white level is, being
        variation of the expected rate between nearby points that the kernel does not follow.
        """
        mean = np.empty((len(unit), len(self.models)))
        sd = np.empty_like(mean)
        for j, model in enumerate(self.models):
            if isinstance(model, tuple):
                mean[:, j], sd[:, j] = model
            else:
                mean[:, j], sd[:, j] = model.predict(unit, return_std=True)
        return mean, sd


def logit_sampling_variance(counts: np.ndarray, n: int) -> np.ndarray:
    """Variance of the smoothed logit ``logit((K + 0.5) / (n + 1))`` for K ~ Binomial(n, p), p each count's smoothed rate.

    Exact over K = 0..n rather than the delta method's 1 / (n p (1 - p)), which at 0 of 16 gives 2.1
    where the exact value is 0.42.
    """
    from scipy.stats import binom

    k = np.arange(n + 1)
    y = _logit((k + 0.5) / (n + 1.0))
    pmf = binom.pmf(k[None, :], n, ((np.asarray(counts, float) + 0.5) / (n + 1.0))[:, None])
    mean = pmf @ y
    return pmf @ y**2 - mean**2


def _logit(p):
    return np.log(p) - np.log1p(-p)


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- posterior and predictions


def log_likelihood(mean: np.ndarray, sd: np.ndarray, metrics: list[Metric]) -> np.ndarray:
    """Per draw and metric: log of the binomial probability of the reported count, over the emulated logit."""
    k = np.array([m.reported for m in metrics], dtype=float)
    n = np.array([m.n for m in metrics], dtype=float)
    return np.log(np.maximum(mixed_binomial_pmf(k, n, mean, sd), 1e-300))


def mixed_binomial_pmf(k, n, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(count = k) of n patients at the rate expit(N(mean, sd^2)), by Gauss-Hermite quadrature (arrays broadcast)."""
    from scipy.stats import binom

    pmf = 0.0
    for x, w in zip(GH_NODES, GH_WEIGHTS, strict=True):
        pmf = pmf + w / math.sqrt(math.pi) * binom.pmf(k, n, _expit(mean + math.sqrt(2.0) * sd * x))
    return pmf


def weights_from(loglik: np.ndarray, keep: np.ndarray, log_q: np.ndarray | None = None) -> np.ndarray:
    """Normalized importance weights of the draws from the metrics ``keep`` (a boolean mask).

    ``log_q`` is the log density of the proposal the draws came from, relative to the
    uniform prior on the unit cube (None: the draws are prior draws).
    """
    return normalized_exp(loglik[:, keep].sum(axis=1) - (0.0 if log_q is None else log_q))


def normalized_exp(log_w: np.ndarray) -> np.ndarray:
    """Weights from log weights, normalized to sum 1 (shifted by the largest first, so none overflows)."""
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


#: Tempered sequential Monte Carlo on the emulators: particles (at most), the effective share each
#: temperature keeps, the share of particles that must have moved before the next temperature, and
#: the Metropolis moves per temperature at most.
SMC_PARTICLES, SMC_ESS_SHARE, SMC_MOVED_SHARE, SMC_MAX_MOVES = 4000, 0.5, 0.9, 30
#: Importance sampling after it: rounds at most, the effective share that ends them, the defensive
#: (uniform) share, the mixture's components (at most) and the inflation of their covariances.
IS_ROUNDS, ENOUGH_ESS_SHARE, DEFENSIVE, MIXTURE_COMPONENTS, INFLATE = 3, 0.1, 0.2, 32, 1.5


def next_temperature(log_target: np.ndarray, beta: float, min_ess: float) -> float:
    """The largest temperature above ``beta`` (at most 1) whose incremental weights keep ``min_ess`` effective draws."""
    if effective_sample_size(normalized_exp((1.0 - beta) * log_target)) >= min_ess:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(40):  # bisection: the effective sample size falls as the temperature rises
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if effective_sample_size(normalized_exp((mid - beta) * log_target)) >= min_ess else (lo, mid)
    return max(lo, beta + 1e-12)


def smc_particles(log_target, d: int, n: int, rng: np.random.Generator, log=print) -> np.ndarray:
    """``n`` draws (unit cube, uniform prior) of the density ``exp(log_target)``, by tempered sequential Monte Carlo.

    From prior draws, each temperature ``beta`` is raised as far as keeps ``SMC_ESS_SHARE`` of the
    particles effective; the particles are resampled and moved by random-walk Metropolis steps on
    ``exp(beta * log_target)``, their covariance scaled toward a 23% acceptance (Del Moral, Doucet
    & Jasra 2006, JRSS B 68:411), until ``SMC_MOVED_SHARE`` of them have moved (resampling leaves
    copies; a mixture fitted to copies is too narrow). The moves follow a curved or sharp
    posterior far better than a normal fitted to weighted prior draws.
    """
    x = rng.random((n, d))
    ll = log_target(x)
    beta, scale, steps = 0.0, 2.38 / math.sqrt(d), 0
    while beta < 1.0:
        beta_next = next_temperature(ll, beta, SMC_ESS_SHARE * n)
        idx = _systematic_resample(normalized_exp((beta_next - beta) * ll), rng)
        x, ll, beta, steps = x[idx], ll[idx], beta_next, steps + 1
        chol = np.linalg.cholesky(np.cov(x.T).reshape(d, d) + 1e-10 * np.eye(d))
        moved = np.zeros(n, bool)
        for _ in range(SMC_MAX_MOVES):
            prop = x + scale * rng.standard_normal((n, d)) @ chol.T
            inside = np.all((prop >= 0.0) & (prop <= 1.0), axis=1)
            ll_prop = np.full(n, -np.inf)
            if inside.any():
                ll_prop[inside] = log_target(prop[inside])
            accept = np.log(rng.random(n)) < beta * (ll_prop - ll)
            x[accept], ll[accept], moved = prop[accept], ll_prop[accept], moved | accept
            scale *= math.exp(accept.mean() - 0.234)  # toward the optimal random-walk acceptance
            if moved.mean() >= SMC_MOVED_SHARE:
                break
        log(f"sequential Monte Carlo step {steps}: temperature {beta:.3g}, {moved.mean():.0%} of the particles moved")
    return x


def _systematic_resample(w: np.ndarray, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Indices of ``size`` (default ``len(w)``) draws by systematic resampling (the least noise of the usual schemes)."""
    size = len(w) if size is None else size
    positions = (rng.random() + np.arange(size)) / size
    return np.minimum(np.searchsorted(np.cumsum(w), positions), len(w) - 1)


class MixtureProposal:
    """A proposal: a Gaussian mixture fitted to posterior draws and a ``DEFENSIVE`` share of the uniform prior.

    The mixture's covariances are inflated by ``INFLATE`` and it is truncated to the unit cube; the
    uniform share keeps the tails that leaving a study out may need.
    """

    def __init__(self, draws: np.ndarray, seed: int):
        from sklearn.mixture import GaussianMixture

        d = draws.shape[1]
        k = max(1, min(MIXTURE_COMPONENTS, len(draws) // (10 * (d + 1))))
        gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, random_state=seed).fit(draws)
        self.weights, self.means, self.covs = gmm.weights_, gmm.means_, INFLATE * gmm.covariances_
        self.chols = np.linalg.cholesky(self.covs)
        self.mass = 1.0  # the mixture's probability inside the cube, measured when drawing

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws on the unit cube (the uniform share first)."""
        d, n_uniform = self.means.shape[1], int(DEFENSIVE * n)
        kept, tried = [rng.random((n_uniform, d))], 0
        while sum(len(x) for x in kept[1:]) < n - n_uniform:  # the mixture truncated to the cube, by rejection
            comp = rng.choice(len(self.weights), size=max(n, 1), p=self.weights)
            x = self.means[comp] + np.einsum("nij,nj->ni", self.chols[comp], rng.standard_normal((len(comp), d)))
            kept.append(x[np.all((x >= 0) & (x <= 1), axis=1)])
            tried += len(comp)
        self.mass = sum(len(x) for x in kept[1:]) / tried
        return np.vstack(kept)[:n]

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Log density relative to the uniform prior on the cube (after :meth:`sample` has measured the mass)."""
        from scipy.special import logsumexp
        from scipy.stats import multivariate_normal

        log_comp = np.column_stack([multivariate_normal(m, c).logpdf(x) for m, c in zip(self.means, self.covs, strict=True)])
        log_comp = log_comp.reshape(len(x), -1) + np.log(self.weights)
        return np.log(DEFENSIVE + (1 - DEFENSIVE) * np.exp(logsumexp(log_comp, axis=1)) / self.mass)


def posterior_draws(
    emulators: Emulators, metrics: list[Metric], spec: EmulatorSpec, log=print, log_prior=None, fixed=None
) -> tuple:
    """Draws (unit cube), emulated logit mean and sd, log-likelihoods, proposal log densities, and SMC's particles.

    ``log_prior(draws)``: the behaviour prior's log factor (:mod:`sim.workflows.constraints`), folded into
    the returned proposal densities, so both methods weigh the draws against the constrained prior.
    ``fixed``: unit-cube coordinates to hold (NaN where a parameter is free): the posterior of the
    free parameters given those values.

    Sequential Monte Carlo on the emulators (:func:`smc_particles`) finds the posterior; a
    :class:`MixtureProposal` fitted to its particles proposes the ``posterior_draws`` draws, which
    importance sampling weighs (so each left-out study's posterior is a reweighting of the same
    draws, and the effective sample size says honestly how well the proposal fits). While that is
    below ``ENOUGH_ESS_SHARE`` of the draws and still grows by a tenth, the mixture is refitted to
    the weighted draws; the best round is returned.
    """
    fixed = np.full(len(spec.parameters), np.nan) if fixed is None else np.asarray(fixed, float)
    free = np.isnan(fixed)
    d, n = int(free.sum()), spec.posterior_draws

    def embed(x):
        full = np.tile(fixed, (len(x), 1))
        full[:, free] = x
        return full

    def prior_factor(full):
        return np.zeros(len(full)) if log_prior is None else log_prior(full)

    def log_target(x):
        full = embed(x)
        return log_likelihood(*emulators.predict(full), metrics).sum(axis=1) + prior_factor(full)

    if d == 0:  # every parameter held: the posterior is that one point
        full = np.tile(fixed, (n, 1))
        mean, sd = emulators.predict(full)
        return full, mean, sd, log_likelihood(mean, sd, metrics), np.zeros(n), full[: min(SMC_PARTICLES, n)]
    rng = np.random.default_rng(spec.seed + 1)
    particles = smc = smc_particles(log_target, d, min(SMC_PARTICLES, n), rng, log)
    best: tuple = (-1.0,)
    for k in range(IS_ROUNDS):
        mixture = MixtureProposal(particles, spec.seed + k)
        draws = mixture.sample(n, rng)
        full = embed(draws)
        log_q = mixture.log_density(draws) - prior_factor(full)
        mean, sd = emulators.predict(full)
        loglik = log_likelihood(mean, sd, metrics)
        w = weights_from(loglik, np.ones(len(metrics), bool), log_q)
        ess = effective_sample_size(w)
        log(f"importance sampling round {k + 1}: effective sample size {ess:.0f} of {n}")
        if ess <= 1.1 * best[0]:  # no real gain on the last round
            break
        best = (ess, full, mean, sd, loglik, log_q)
        if ess >= ENOUGH_ESS_SHARE * n:
            break
        particles = draws[_systematic_resample(w, rng, len(particles))]
    return (*best[1:], embed(smc))


def effective_sample_size(w: np.ndarray) -> float:
    """Kish's effective sample size of normalized weights."""
    return float(1.0 / np.sum(w**2))


def predictive_interval(
    mean: np.ndarray, sd: np.ndarray, w: np.ndarray, metric: Metric, j: int, rng: np.random.Generator
) -> tuple[float, int, int]:
    """Posterior predictive mean and central 95% interval of one count (a cohort of the reported size)."""
    idx = rng.choice(len(w), size=PREDICTIVE_DRAWS, p=w)
    p = _expit(mean[idx, j] + sd[idx, j] * rng.standard_normal(PREDICTIVE_DRAWS))
    draws = rng.binomial(metric.n, p)
    lo, hi = np.quantile(draws, [0.025, 0.975], method="inverted_cdf")
    return float(draws.mean()), int(lo), int(hi)


@dataclass(frozen=True)
class Prediction(Metric):
    """One reported count (its :class:`Metric` fields first) against its posterior predictive interval."""

    method: str
    mode: str
    predicted_mean: float
    lower: int
    upper: int
    inside: bool
    binomial_width: int


def binomial_width(k: int, n: int) -> int:
    """Width of the central 95% interval of a binomial with the observed rate: the yardstick of an interval's width."""
    from scipy.stats import binom

    lo, hi = binom.ppf([0.025, 0.975], n, k / n)
    return int(hi - lo)


def predictions(mean: np.ndarray, sd: np.ndarray, weigh, metrics: list[Metric], seed: int, method: str) -> list[Prediction]:
    """In-sample and leave-one-study-group-out predictive intervals of every reported count.

    ``weigh(keep)`` gives the normalized weights of the draws from the counts ``keep`` (a mask).
    """
    rng = np.random.default_rng(seed)
    groups = np.array([m.group for m in metrics])
    all_w = weigh(np.ones(len(metrics), bool))
    out = []
    for mode in ("in_sample", "leave_one_study_out"):
        for group in dict.fromkeys(groups):
            w = all_w if mode == "in_sample" else weigh(groups != group)
            for j in np.flatnonzero(groups == group):
                m = metrics[j]
                mu, lo, hi = predictive_interval(mean, sd, w, m, j, rng)
                out.append(
                    Prediction(**asdict(m), method=method, mode=mode, predicted_mean=mu, lower=lo, upper=hi,
                               inside=lo <= m.reported <= hi, binomial_width=binomial_width(m.reported, m.n))
                )  # fmt: skip
    return out


def coverage(preds: list[Prediction], mode: str) -> dict:
    """Share inside, mean interval width against the binomial yardstick, and intervals wide for nothing."""
    rows = [p for p in preds if p.mode == mode]
    wide = [p for p in rows if p.n >= 5 and (p.upper - p.lower) > 0.8 * p.n]
    return {
        "metrics": len(rows),
        "inside": sum(p.inside for p in rows),
        "share_inside": sum(p.inside for p in rows) / len(rows) if rows else None,
        "mean_width": float(np.mean([p.upper - p.lower for p in rows])) if rows else None,
        "mean_binomial_width": float(np.mean([p.binomial_width for p in rows])) if rows else None,
        "wider_than_80_percent_of_range": [f"{p.study}/{p.arm}/{p.metric}" for p in wide],
    }


#: Implausibility cut-off (Pukelsheim's three-sigma rule), which largest implausibility is cut (the
#: second: one count the model cannot meet does not rule out every draw, Vernon et al. 2010), and
#: the fewest draws kept (the least implausible, when fewer pass the cut).
IMPLAUSIBILITY_CUTOFF, IMPLAUSIBILITY_ORDER, FEWEST_KEPT = 3.0, 2, 100


def implausibility(mean: np.ndarray, sd: np.ndarray, metrics: list[Metric]) -> np.ndarray:
    """Per draw and metric: distance of the emulated from the reported logit rate, in sd of both.

    The reported rate is Jeffreys-smoothed as the emulated one is; its variance on the logit
    scale is the delta method's 1 / (n p (1 - p)).
    """
    k = np.array([m.reported for m in metrics], dtype=float)
    n = np.array([m.n for m in metrics], dtype=float)
    p = (k + 0.5) / (n + 1.0)
    return np.abs(_logit(p) - mean) / np.sqrt(sd**2 + 1.0 / ((n + 1.0) * p * (1.0 - p)))


def history_matching_weights(imp: np.ndarray, keep: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """Equal prior weight on the draws not ruled out by the counts ``keep``."""
    kept = imp[:, keep]
    order = min(IMPLAUSIBILITY_ORDER, kept.shape[1])
    worst = np.sort(kept, axis=1)[:, -order]
    cut = max(IMPLAUSIBILITY_CUTOFF, np.sort(worst)[FEWEST_KEPT - 1])
    kept_draws = worst <= cut
    w = kept_draws * np.exp(-(log_q - log_q[kept_draws].min()))  # log_q may carry a behaviour prior far below 0
    return w / w.sum()


#: Base samples of the Sobol analysis on the emulators (N (d + 2) emulated points), and the total
#: index below which a parameter is called inert on a count.
SOBOL_BASE, INERT_TOTAL_INDEX = 1024, 0.05
#: Posterior contraction below which the counts are said not to pin a parameter down: they
#: removed less than half of its prior variance.
MIN_CONTRACTION = 0.5


def sensitivity(emulators: Emulators, spec: EmulatorSpec, metrics: list[Metric]) -> list[dict]:
    """First-order and total Sobol indices (SALib) of every emulated rate over the prior box.

    On the emulators' mean, not the simulator: the N (d + 2) evaluations a Sobol analysis needs
    cost seconds there. A count that no design point moved has no indices.
    """
    from SALib.analyze import sobol as analyze
    from SALib.sample import sobol as sample

    names = list(spec.parameters)
    problem = {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}
    x = sample.sample(problem, SOBOL_BASE, calc_second_order=False, seed=spec.seed)
    rates = _expit(emulators.predict(x)[0])
    rows = []
    for j, m in enumerate(metrics):
        if np.ptp(rates[:, j]) < 1e-6:
            continue
        si = analyze.analyze(problem, rates[:, j], calc_second_order=False, seed=spec.seed)
        rows += [
            {"count": f"{m.study}/{m.arm}/{m.metric}", "parameter": name, "S1": float(si["S1"][k]), "ST": float(si["ST"][k])}
            for k, name in enumerate(names)
        ]
    return rows


def screen(rows: list[dict], names: list[str], contracted: dict[str, float] | None = None) -> dict[str, dict]:
    """Per parameter: the largest and the mean total index over the counts, and whether the data identify it.

    Identified: a total index of at least ``INERT_TOTAL_INDEX`` on some count (it moves a count)
    and, given ``contracted``, a posterior contraction of at least ``MIN_CONTRACTION`` (the counts
    pin it down). The others keep their sourced defaults.
    """
    out = {}
    for name in names:
        st = [r["ST"] for r in rows if r["parameter"] == name]
        top = max(st, default=0.0)
        shrink = None if contracted is None else contracted[name]
        out[name] = {"max_total_index": top, "mean_total_index": float(np.mean(st)) if st else 0.0,
                     "contraction": shrink,
                     "identified": top >= INERT_TOTAL_INDEX and (shrink is None or shrink >= MIN_CONTRACTION)}  # fmt: skip
    return out


#: Effective draws below which a method's posterior is mostly Monte Carlo noise (its medians and the
#: shipped draws would repeat a few points): such a method competes only when no method reaches them.
MIN_EFFECTIVE_DRAWS = 200


def better(comparison: dict) -> str:
    """The method with more left-out counts inside its interval; on a tie, the narrower intervals.

    Only methods with at least ``MIN_EFFECTIVE_DRAWS`` effective draws compete, when any has them.
    """

    def key(method):
        cv = comparison[method]["leave_one_study_out"]
        return (cv["inside"], -cv["mean_width"])

    enough = [m for m, c in comparison.items() if c["effective_sample_size"] >= MIN_EFFECTIVE_DRAWS]
    return max(enough or comparison, key=key)


# --------------------------------------------------------------------------- the fit


def run_fit(spec_path: Path, out: Path, workers: int = 1, scheduler: str | None = None, log=print) -> dict:
    """Design, runs, emulators, posterior and predictions; writes the outputs and returns the fit record."""
    from sim.io import content_hash, refuse_other_work, write_json

    spec = load_emulator_spec(spec_path)
    arms, metrics = reported_counts(spec, (spec_path.parent / spec.scenarios).resolve())
    payload = _payload(arms, metrics, spec.n_patients)
    behaviour_arms = constraint_arms(spec, spec_path)  # a bad constraint stops the fit before any simulation
    # the design's identity: what the simulations depend on (not the posterior's settings, which reuse the same runs)
    simulated = spec.model_dump(mode="json", include={"parameters", "targets", "n_patients", "design_points", "set", "seed"})
    key = content_hash({"spec": simulated, "arms": arms, "metrics": [asdict(m) for m in metrics]})
    refuse_other_work(out, "points/spec.json", key, "the spec, arms and reported counts of the unfinished fit there")
    (out / "points").mkdir(parents=True, exist_ok=True)
    write_json(out / "points" / "spec.json", {"hash": key, "name": spec.name})
    log(f"{spec.name}: {len(spec.parameters)} parameters, {len(metrics)} reported counts in {len(arms)} arms, "
        f"{spec.design_points} design points x {spec.n_patients} patients per arm")  # fmt: skip
    unit = design(spec)
    counts = run_design(run_point, payload, spec, unit, spec.n_patients, out / "points", workers, scheduler, log)
    behaviour = _behaviour(spec, behaviour_arms, unit, out, workers, scheduler, log)
    prior_shares = None if behaviour is None else behaviour / spec.constraint_patients
    emulators, behaviour_emulators, log_prior = _emulate(spec, unit, counts, behaviour, log)
    log("stage 1: every parameter")
    first = _posterior(emulators, metrics, spec, log, log_prior)
    if spec.refine_points:
        wave = f"points-refine-{spec.refine_points}"  # a folder per size: each keeps its own points
        extra = refined_design(spec, first, out / wave)
        log(f"refinement: {len(extra)} design points drawn from the stage-1 posterior")
        unit = np.vstack([unit, extra])
        refined = run_design(run_point, payload, spec, extra, spec.n_patients, out / wave, workers, scheduler, log)
        counts = np.vstack([counts, refined])
        if behaviour is not None:
            behaviour = np.vstack([behaviour, _behaviour(spec, behaviour_arms, extra, out, workers, scheduler, log, wave)])
        emulators, behaviour_emulators, log_prior = _emulate(spec, unit, counts, behaviour, log)
        log("stage 1 again, on both waves")
        first = _posterior(emulators, metrics, spec, log, log_prior)
    log("Sobol indices on the emulators")
    rows = sensitivity(emulators, spec, metrics)
    # contraction on the SMC particles (equal weights: a posterior sample whatever importance sampling's effective
    # draws, which were 91 on both waves, too few for a variance); against the prior the behaviours leave
    shrink = contraction(spec, first["particles"], np.full(len(first["particles"]), 1.0 / len(first["particles"])),
                         prior_variance(spec, log_prior))  # fmt: skip
    identified = screen(rows, list(spec.parameters), shrink)
    fixed = np.array([np.nan if s["identified"] else default_unit(spec, name) for name, s in identified.items()])
    final = first
    if not np.isnan(fixed).all():
        held = [name for name, s in identified.items() if not s["identified"]]
        log(f"stage 2: the identified parameters; held at their defaults: {', '.join(held)}")
        final = _posterior(emulators, metrics, spec, log, log_prior, fixed)
    w, values = final["weights"][final["chosen"]], to_values(spec, final["draws"])
    record = _record(spec, spec_path, metrics, values, w, final["comparison"], final["chosen"], identified)
    record["stage_1"] = {"chosen_method": first["chosen"], "comparison": first["comparison"]}
    record["design"] = {"prior_points": spec.design_points, "refine_points": len(unit) - spec.design_points}
    if behaviour is not None:
        post = behaviour_emulators.predict(final["draws"])
        record["constraints"] = constraints.summary(prior_shares, post, w, spec.constraints)
    _write(out, spec, unit, counts, metrics, values, w, final["preds"], record, rows)
    return record


def _emulate(spec, unit, counts, behaviour, log) -> tuple:
    """The counts' emulators, the behaviours' (or None) and the behaviour prior's log factor (or None)."""
    log(f"fitting the emulators on {len(unit)} design points")
    emulators = Emulators(unit, counts, spec.n_patients, spec.seed)
    if behaviour is None:
        return emulators, None, None
    behaviour_emulators = Emulators(unit, behaviour, spec.constraint_patients, spec.seed)
    return emulators, behaviour_emulators, lambda x: constraints.log_prior(*behaviour_emulators.predict(x), spec.constraints)


def _bayesian(fit: dict) -> str:
    """Importance sampling's weights (a Bayesian posterior's) when they have enough effective draws, else the kept method's."""
    ess = fit["comparison"]["importance_sampling"]["effective_sample_size"]
    return "importance_sampling" if ess >= MIN_EFFECTIVE_DRAWS else fit["chosen"]


def refined_design(spec: EmulatorSpec, first: dict, folder: Path) -> np.ndarray:
    """The second wave: ``refine_points`` distinct draws of the stage-1 posterior (unit cube), drawn by weight.

    A GP fitted to a Sobol sample of the whole box is least sure where the posterior lies, a small
    part of it; points there make the emulators, and so the likelihood and the intervals, sharper
    where they matter (the refocusing of history matching's waves: Vernon et al. 2010, Bayesian
    Analysis 5:619). The emulators still see only simulations; the reported counts choose where to
    simulate. The points are kept in ``folder/design.json``, so a rerun (even after a change of the
    posterior's settings) simulates and reuses the same points.
    """
    from sim.io import write_json

    path = folder / "design.json"
    if path.is_file():
        return np.array(json.loads(path.read_text())["unit"], dtype=float)
    w = first["weights"][_bayesian(first)]
    rng = np.random.default_rng(spec.seed + 3)
    idx = rng.choice(len(w), size=min(spec.refine_points, int(np.count_nonzero(w))), replace=False, p=w)
    unit = first["draws"][np.sort(idx)]
    folder.mkdir(parents=True, exist_ok=True)
    write_json(path, {"unit": unit.tolist()})
    return unit


def _posterior(emulators, metrics, spec, log, log_prior, fixed=None) -> dict:
    """Both methods on one set of draws: predictions in and out of sample, the comparison, the kept method, the weights."""
    draws, mean, sd, loglik, log_q, particles = posterior_draws(emulators, metrics, spec, log, log_prior, fixed)
    imp = implausibility(mean, sd, metrics)
    methods = {
        "importance_sampling": lambda keep: weights_from(loglik, keep, log_q),
        "history_matching": lambda keep: history_matching_weights(imp, keep, log_q),
    }
    preds, comparison, weights = [], {}, {}
    for method, weigh in methods.items():
        mine = predictions(mean, sd, weigh, metrics, spec.seed, method)
        weights[method] = weigh(np.ones(len(metrics), bool))
        comparison[method] = {"effective_sample_size": effective_sample_size(weights[method])} | {
            mode: coverage(mine, mode) for mode in ("in_sample", "leave_one_study_out")
        }
        preds += mine
    chosen = better(comparison)
    log(f"kept {chosen}: " + "; ".join(
        f"{m} {c['leave_one_study_out']['inside']}/{c['leave_one_study_out']['metrics']} inside out of sample"
        for m, c in comparison.items()))  # fmt: skip
    return {"draws": draws, "preds": preds, "comparison": comparison, "chosen": chosen, "weights": weights,
            "particles": particles}  # fmt: skip


def default_unit(spec: EmulatorSpec, name: str) -> float:
    """The default value of a parameter as a unit-cube coordinate of its prior (inside: checked on loading)."""
    return float(_unit(spec, name, PARAMETERS[name].value))


def contraction_text(entry: dict) -> str:
    """A posterior entry's contraction as a table shows it (``-`` when the fit did not measure one)."""
    return "-" if entry.get("contraction") is None else f"{entry['contraction']:.2f}"


def _weighted_variance(draws: np.ndarray, w: np.ndarray) -> np.ndarray:
    mean = w @ draws
    return w @ (draws - mean) ** 2


def prior_variance(spec: EmulatorSpec, log_prior=None) -> np.ndarray:
    """Per parameter, the variance on the unit cube of the prior the counts meet.

    Uniform (1/12), or the uniform times the behaviour prior (``log_prior``), measured on scrambled Halton draws.
    """
    from scipy.stats import qmc

    if log_prior is None:
        return np.full(len(spec.parameters), 1.0 / 12.0)
    u = qmc.Halton(len(spec.parameters), scramble=True, seed=spec.seed + 2).random(spec.posterior_draws)
    return _weighted_variance(u, normalized_exp(log_prior(u)))


def contraction(spec: EmulatorSpec, draws: np.ndarray, w: np.ndarray, prior_var: np.ndarray | None = None) -> dict[str, float]:
    """Posterior contraction per parameter: 1 - posterior variance / prior variance, on the unit cube.

    Near 0 the data leave the prior as it was; near 1 they pin the parameter down
    (Schad, Betancourt & Vasishth 2021, Psychol Methods 26:103). ``prior_var``: default the uniform box's.
    """
    prior_var = prior_variance(spec) if prior_var is None else prior_var
    var = _weighted_variance(draws, w)
    return {name: float(1.0 - var[j] / prior_var[j]) for j, name in enumerate(spec.parameters)}


def constraint_arms(spec: EmulatorSpec, spec_path: Path) -> list[tuple[str, str]]:
    """Each constraint's scenario (JSON) and outcome, checked: a bad override or column is a UserError now."""
    if not spec.constraints:
        return []
    arms = constraints.payload(spec.constraints, (spec_path.parent / spec.scenarios).resolve(), overrides(spec))
    constraints.check_columns(arms, list(spec.constraints), str(spec_path))
    return arms


def _behaviour(spec, arms, unit, out, workers, scheduler, log, wave: str | None = None):
    """The constraints' simulated counts at the design points ``unit``, or None without constraints.

    Each constraint has its own folder, ``OUT/constraints/<hash>``, named by what it simulates (the design's
    points, not the reported counts): a new or changed constraint is simulated alone, and neither the reported
    counts' design nor a change of the reported counts re-simulates the others.
    """
    from sim.io import content_hash, write_json

    if not arms:
        return None
    log(f"{len(spec.constraints)} constraints x {len(unit)} design points x {spec.constraint_patients} patients")
    points = spec.model_dump(mode="json", include={"parameters", "design_points", "set", "seed"})
    if wave is not None:  # the refinement's points: its own folders (the first wave's keep their names)
        points["wave"] = wave
    counts = []
    for name, arm in zip(spec.constraints, arms, strict=True):
        folder = out / "constraints" / content_hash({"design": points, "constraint": arm, "n": spec.constraint_patients})
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "constraint.json", {"name": name, "scenario": arm[0], "outcome": arm[1]})
        counts.append(run_design(constraints.run_point, [arm], spec, unit, spec.constraint_patients, folder, workers,
                                 scheduler, log))  # fmt: skip
    return np.hstack(counts)


def _record(spec, spec_path, metrics, values, w, comparison, chosen, identified) -> dict:
    import datetime

    from sim.io import provenance
    from sim.workflows.calibrate import weighted_quantiles

    posterior = {}
    for j, (name, prior) in enumerate(spec.parameters.items()):
        q = weighted_quantiles(values[:, j], w, [0.025, 0.5, 0.975])
        posterior[name] = {
            "median": q[1],
            "ci95": [q[0], q[2]],
            "prior": list(prior_range(name, prior)),
            "default": PARAMETERS[name].value,
            **identified[name],
        }
    return {
        "name": spec.name,
        "method": f"GP emulators + {chosen.replace('_', ' ')}",
        "chosen_method": chosen,
        "comparison": comparison,
        "spec": str(spec_path),
        "data": ", ".join(f"{t}" for t in spec.targets) + f" ({len(metrics)} reported counts)",
        "seed": spec.seed,
        "date": datetime.date.today().isoformat(),
        "effective_sample_size": effective_sample_size(w),
        "posterior": posterior,
        "coverage": comparison[chosen],
        "provenance": provenance(),
    }


def _write(out, spec, unit, counts, metrics, values, w, preds, record, sobol_rows) -> None:
    import pandas as pd
    import yaml

    from sim.io import atomic_path, save_figure, write_json, write_parquet

    names = list(spec.parameters)
    cols = [f"{m.study}/{m.arm}/{m.metric}" for m in metrics]
    design_table = pd.concat([pd.DataFrame(to_values(spec, unit), columns=names), pd.DataFrame(counts, columns=cols)], axis=1)
    design_table["wave"] = np.where(np.arange(len(unit)) < spec.design_points, 1, 2)  # 2: the refinement
    write_parquet(out / "design.parquet", design_table)
    write_parquet(out / "posterior.parquet", pd.DataFrame(values, columns=names).assign(weight=w))
    write_parquet(out / "sensitivity.parquet", pd.DataFrame(sobol_rows, columns=["count", "parameter", "S1", "ST"]))
    fit = {**record, "predictions": [asdict(p) for p in preds]}
    write_json(out / "fit.json", fit)
    with atomic_path(out / "cross_validation.md") as tmp:
        tmp.write_text(f"# Emulator fit: in sample and leave one study out\n\n{fit_markdown(fit, 'calibration.png')}")
    fitted = {n: s["median"] for n, s in record["posterior"].items() if s["identified"]}
    with atomic_path(out / "calibrated.yaml") as tmp:
        tmp.write_text(
            f"# Posterior medians of the emulator fit ({record['chosen_method']}) of the parameters the data identify\n"
            f"# (total Sobol index >= {INERT_TOTAL_INDEX} on some count, contraction >= {MIN_CONTRACTION});\n"
            "# the others stay at their defaults.\n"
            f"# Use: --params {out / 'calibrated.yaml'}\n"
            + yaml.safe_dump(
                {"params": fitted, "provenance": {k: v for k, v in record.items() if k != "comparison"}}, sort_keys=False
            )  # fmt: skip
        )
    save_figure(out / "calibration.png", calibration_figure([p for p in preds if p.method == record["chosen_method"]]))


def calibration_figure(preds: list[Prediction]):
    """Predicted against reported rate with 95% predictive intervals, in sample and leave one study out."""
    from sim.plots import subplots

    fig, axes = subplots(1, 2, figsize=(11, 5), sharey=True)
    for ax, mode in zip(axes, ("in_sample", "leave_one_study_out"), strict=True):
        rows = [p for p in preds if p.mode == mode]
        for p in rows:
            color = "tab:blue" if p.inside else "tab:red"
            ax.plot([p.reported / p.n] * 2, [p.lower / p.n, p.upper / p.n], color=color, alpha=0.5, lw=1.5)
            ax.plot(p.reported / p.n, p.predicted_mean / p.n, "o", color=color, ms=4)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        inside = sum(p.inside for p in rows)
        ax.set(xlabel="reported rate", title=f"{mode.replace('_', ' ')}: {inside} of {len(rows)} inside", xlim=(-0.03, 1.03))
    axes[0].set_ylabel("predicted rate (mean and 95% interval)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the report


def _interval(p: dict) -> str:
    return f"{p['lower']}-{p['upper']}" + ("" if p["inside"] else " **miss**")


def fit_markdown(fit: dict, figure: str) -> str:
    """The fit as Markdown: methods compared, the screen and posterior, every count in sample and left out."""
    chosen = fit["chosen_method"]
    lines = [
        f"Fit `{fit['name']}` ({fit['spec']}, seed {fit['seed']}, {fit['date']}): {fit['data']}. Both methods use the "
        f"same design (the same simulations); **{chosen.replace('_', ' ')}** is kept, having more left-out counts inside "
        "(then narrower intervals).",
        "",
        "| method | in sample inside | left out inside | mean width in / out (binomial) | intervals > 80% of range "
        "(n >= 5), left out | effective draws |",
        "|---|---|---|---|---|---|",
    ]
    for method, c in fit["comparison"].items():
        ins, out = c["in_sample"], c["leave_one_study_out"]
        lines.append(
            f"| {method.replace('_', ' ')} | {ins['inside']}/{ins['metrics']} | {out['inside']}/{out['metrics']} | "
            f"{ins['mean_width']:.2f} / {out['mean_width']:.2f} ({ins['mean_binomial_width']:.2f}) | "
            f"{len(out['wider_than_80_percent_of_range'])} | {c['effective_sample_size']:.0f} |"
        )
    lines += [
        "",
        f"Sensitivity screen and posterior ({chosen.replace('_', ' ')}): the largest total Sobol index of a parameter over "
        "the emulated counts (SALib on the emulators) and its posterior contraction with every parameter free (1 - "
        "posterior / prior variance). The data identify a parameter that reaches a total index of "
        f"{INERT_TOTAL_INDEX} on some count and a contraction of {MIN_CONTRACTION}; the others are held at their defaults "
        "and the posterior shown is that of the identified ones given them (stage 2).",
        "",
        "| parameter | prior | default | posterior median (95%) | largest total index | contraction | identified |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in fit["posterior"].items():
        lines.append(
            f"| {name} | {s['prior'][0]:.3g}-{s['prior'][1]:.3g} | {s['default']:.3g} | {s['median']:.3g} "
            f"({s['ci95'][0]:.3g}-{s['ci95'][1]:.3g}) | {s['max_total_index']:.2f} | {contraction_text(s)} | "
            f"{'yes' if s['identified'] else 'no'} |"
        )
    if "stage_1" in fit:
        one = fit["stage_1"]["comparison"][fit["stage_1"]["chosen_method"]]
        lines += ["", f"Stage 1 (every parameter free, {fit['stage_1']['chosen_method'].replace('_', ' ')}): "
                  f"{one['in_sample']['inside']}/{one['in_sample']['metrics']} in sample, "
                  f"{one['leave_one_study_out']['inside']}/{one['leave_one_study_out']['metrics']} left out."]  # fmt: skip
    lines += _constraints_markdown(fit.get("constraints", []))
    rows: dict[tuple, dict] = {}
    for p in fit["predictions"]:
        if p["method"] == chosen:
            rows.setdefault((p["study"], p["arm"], p["metric"]), {})[p["mode"]] = p
    lines += [
        "",
        "Every reported count against its 95% posterior predictive interval, in sample and predicted from a fit that "
        "never saw its study group (leave one study out):",
        "",
        "| set | study | arm | metric | reported | in sample | left out |",
        "|---|---|---|---|---|---|---|",
    ]
    for (study, arm, metric), r in rows.items():
        ins, out = r["in_sample"], r["leave_one_study_out"]
        lines.append(f"| {ins['target_set']} | {study} | {arm} | {metric} | {ins['reported']}/{ins['n']} | "
                     f"{_interval(ins)} | {_interval(out)} |")  # fmt: skip
    lines += ["", f"![predicted against reported rate]({figure})", ""]
    return "\n".join(lines)


def _constraints_markdown(rows: list[dict]) -> list[str]:
    """The behaviour prior's constraints: range, and the share over the design (prior) and under the posterior."""
    if not rows:
        return []
    out = [
        "",
        "Behaviours the fit must keep (`constraints` of the spec, `sim.workflows.constraints`): the prior is multiplied by the "
        "emulated probability that each share lies in its range. Prior: the simulated shares over the design points "
        "(a Sobol sample of the prior box); posterior: the emulated share and the probability it lies in range.",
        "",
        "| constraint | scenario | outcome | range | prior share (in range) | posterior share (in range) | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        where = r["scenario"] + "".join(f" `{x}`" for x in r["set"])
        out.append(
            f"| {r['constraint']} | {where} | `{r['outcome']}` | {r['share'][0]:.2f}-{r['share'][1]:.2f} | "
            f"{r['prior_share']:.2f} ({r['prior_inside']:.0%}) | {r['posterior_share']:.2f} ({r['posterior_inside']:.0%}) | "
            f"{r['source']} |"
        )
    return out
