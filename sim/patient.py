"""Virtual patients: draws from the scenario's population distributions.

Each quantity has its own named stream (:mod:`sim.rng`), so patient ``i`` is the same
virtual patient in every arm that shares the population, whatever the product.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from sim import rng
from sim.antigens import Atlas, default_atlas
from sim.scenario import Dist, Scenario


def draw(d: Dist, g: np.random.Generator) -> float:
    """One draw of a scenario distribution, clipped to its ``low``/``high``."""
    if d.dist == "fixed":
        return float(d.value)
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
    product_fitness: float
    inflammatory_reactivity: float
    has_emd: bool
    emd_blasts: float
    prior_hsct: bool
    dose_cells_per_kg: float
    antigens: dict[str, AntigenState] = field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """Scalar characteristics for tables (antigen medians as ``<name>_blast_median``)."""
        out = {k: v for k, v in asdict(self).items() if k != "antigens"}
        for name, a in self.antigens.items():
            out[f"{name}_blast_median"] = a.blast_median if a.positive else 0.0
        return out


def sample_patient(scenario: Scenario, index: int, atlas: Atlas | None = None) -> VirtualPatient:
    """Draw patient ``index`` of the scenario's population (seeded by ``scenario.seed``)."""
    atlas = atlas or default_atlas()
    pop = scenario.patient

    def g(name: str) -> np.random.Generator:
        return rng.generator(scenario.seed, index, f"patient.{name}")

    antigens = {}
    for a in atlas.antigens:
        over = pop.antigens.get(a.name)
        pos_frac = a.aml_positive_fraction
        median, b_sd, w_sd, neg = a.blast_median, a.between_patient_log_sd, a.within_patient_log_sd, a.negative_fraction
        lsc = a.lsc_median
        if over is not None:
            pos_frac = over.aml_positive_fraction if over.aml_positive_fraction is not None else pos_frac
            lsc = (
                over.lsc_median
                if over.lsc_median is not None
                else (lsc * over.blast_median / median if over.blast_median else lsc)
            )
            median = over.blast_median or median
            b_sd = over.between_patient_log_sd if over.between_patient_log_sd is not None else b_sd
            w_sd = over.within_patient_log_sd if over.within_patient_log_sd is not None else w_sd
            neg = over.negative_fraction if over.negative_fraction is not None else neg
        ga = g(f"antigen.{a.name}")
        positive = bool(ga.random() < pos_frac)
        factor = float(np.exp(b_sd * ga.standard_normal()))  # the patient's level, shared by blasts and LSC
        antigens[a.name] = AntigenState(positive, float(median * factor), w_sd, neg, float(lsc * factor))
    has_emd = bool(g("emd").random() < pop.emd_probability)
    return VirtualPatient(
        index=index,
        weight_kg=draw(pop.weight_kg, g("weight")),
        bm_blast_fraction=draw(pop.bm_blast_fraction, g("blast_fraction")),
        blast_doubling_days=draw(pop.blast_doubling_days, g("doubling")),
        anc_baseline_1e9_per_l=draw(pop.anc_baseline_1e9_per_l, g("anc")),
        product_fitness=draw(pop.product_fitness, g("fitness")),
        inflammatory_reactivity=draw(pop.inflammatory_reactivity, g("reactivity")),
        has_emd=has_emd,
        emd_blasts=draw(pop.emd_blasts, g("emd_blasts")) if has_emd else 0.0,
        prior_hsct=bool(g("prior_hsct").random() < pop.prior_hsct_probability),
        dose_cells_per_kg=draw(scenario.product.dose_cells_per_kg, g("dose")),
        antigens=antigens,
    )
