"""Virtual patients: draws from the scenario's population distributions.

Each quantity has its own named stream (:mod:`sim.rng`), so patient ``i`` is the same
virtual patient in every arm that shares the population, whatever the product.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from sim import rng
from sim.antigens import AntigenInfo, Atlas, default_atlas
from sim.scenario import AntigenPopulation, Dist, Scenario


def draw(d: Dist, g: np.random.Generator) -> float:
    """One draw of a scenario distribution, clipped to its ``low``/``high``."""
    if d.dist == "fixed":
        return float(d.value)
    if d.dist == "choice":
        w = np.ones(len(d.values)) if d.weights is None else np.asarray(d.weights, float)
        return float(d.values[int(g.choice(len(d.values), p=w / w.sum()))])
    if d.dist == "normal":
        v = g.normal(d.mean, d.sd)
    elif d.dist == "lognormal":
        v = d.median * np.exp(d.sd_log * g.standard_normal())
    elif d.dist == "uniform":
        v = g.uniform(d.low, d.high)
    else:
        v = np.exp(g.uniform(np.log(d.low), np.log(d.high)))
    lo, hi = d.support()
    return float(np.clip(v, lo, hi))


@dataclass
class AntigenState:
    """One antigen in one patient: positivity, median blast density, spreads."""

    positive: bool
    blast_median: float
    within_log_sd: float
    negative_fraction: float
    lsc_median: float


@dataclass
class VirtualPatient:
    """The sampled characteristics of one virtual patient."""

    index: int
    weight_kg: float
    bm_blast_fraction: float
    blast_doubling_days: float
    anc_baseline_1e9_per_l: float
    platelets_baseline_1e9_per_l: float
    product_fitness: float
    inflammatory_reactivity: float
    age_years: float
    has_emd: bool
    emd_blasts: float
    prior_hsct: bool
    dose_cells_per_kg: float
    antigens: dict[str, AntigenState] = field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """Scalar characteristics for tables (per antigen ``<name>_blast_median`` and ``<name>_negative_fraction``)."""
        out = {k: v for k, v in asdict(self).items() if k != "antigens"}
        for name, a in self.antigens.items():
            out[f"{name}_blast_median"] = a.blast_median if a.positive else 0.0
            out[f"{name}_negative_fraction"] = a.negative_fraction if a.positive else 1.0
        return out


def _antigen_state(a: AntigenInfo, over: AntigenPopulation | None, g) -> AntigenState:
    """One antigen of one patient: the atlas entry with the scenario's population overrides."""
    over = over or AntigenPopulation()

    def pick(field: str) -> float:
        value = getattr(over, field)
        return getattr(a, field) if value is None else value

    median, lsc = pick("blast_median"), pick("lsc_median")
    if over.lsc_median is None and over.blast_median is not None:
        lsc = a.lsc_median * median / a.blast_median  # keeps the atlas LSC:blast ratio
    ga = g(f"antigen.{a.name}")
    positive = bool(ga.random() < pick("aml_positive_fraction"))
    factor = float(np.exp(pick("between_patient_log_sd") * ga.standard_normal()))  # shared by blasts and LSC
    neg, neg_sd = pick("negative_fraction"), pick("negative_fraction_log_sd")
    if neg_sd > 0.0:  # its own stream: the other draws of the patient do not move
        neg = min(1.0, neg * float(np.exp(neg_sd * g(f"antigen.{a.name}.negative").standard_normal())))
    return AntigenState(positive, float(median * factor), pick("within_patient_log_sd"), neg, float(lsc * factor))


def sample_patient(scenario: Scenario, index: int, atlas: Atlas | None = None) -> VirtualPatient:
    """Draw patient ``index`` of the scenario's population (seeded by ``scenario.seed``)."""
    atlas = atlas or default_atlas()
    pop = scenario.patient

    def g(name: str) -> np.random.Generator:
        return rng.generator(scenario.seed, index, f"patient.{name}")

    antigens = {a.name: _antigen_state(a, pop.antigens.get(a.name), g) for a in atlas.antigens}
    has_emd = bool(g("emd").random() < pop.emd_probability)
    return VirtualPatient(
        index=index,
        weight_kg=draw(pop.weight_kg, g("weight")),
        bm_blast_fraction=draw(pop.bm_blast_fraction, g("blast_fraction")),
        blast_doubling_days=draw(pop.blast_doubling_days, g("doubling")),
        anc_baseline_1e9_per_l=draw(pop.anc_baseline_1e9_per_l, g("anc")),
        platelets_baseline_1e9_per_l=draw(pop.platelets_baseline_1e9_per_l, g("platelets")),
        product_fitness=draw(pop.product_fitness, g("fitness")),
        inflammatory_reactivity=draw(pop.inflammatory_reactivity, g("reactivity")),
        age_years=draw(pop.age_years, g("age")),
        has_emd=has_emd,
        emd_blasts=draw(pop.emd_blasts, g("emd_blasts")) if has_emd else 0.0,
        prior_hsct=bool(g("prior_hsct").random() < pop.prior_hsct_probability),
        dose_cells_per_kg=draw(scenario.product.dose_cells_per_kg, g("dose")),
        antigens=antigens,
    )
