"""The scenario schema: one YAML file describes one trial arm.

A scenario names the product (targets, logic, iCAR, costimulation, armoring, dose),
the patient population (distributions), lymphodepletion, interventions, the agent
resolution and the outputs. The biology comes from :mod:`sim.params`; a scenario may
override parameters by name under ``params`` (sweeps and tests use that). Any value can
be overridden by a dotted path with ``--set``.
"""

from __future__ import annotations

import difflib
import math
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from sim.antigens import default_atlas
from sim.errors import UserError, did_you_mean
from sim.params import PARAMETERS


def yaml_number(value: Any) -> Any:
    """A number that YAML 1.1 read as a string (``1e6`` without a dot, ``.nan``) as a float; anything else as is."""
    if isinstance(value, str):
        try:
            return float(value.replace(".nan", "nan").replace(".inf", "inf"))
        except ValueError:
            return value
    return value


def load_base(spec_path: Path, base: str, sets: dict) -> tuple[Path, dict]:
    """The raw data of a spec's base scenario (``base`` relative to the spec) with ``sets`` applied.

    Raises:
        UserError: Naming the spec file if the base scenario is missing or a set path is bad.
    """
    path = (spec_path.parent / base).resolve()
    if not path.is_file():
        raise UserError(str(spec_path), "base", base, f"a scenario file relative to the spec ({path} not found)")
    data = read_yaml_mapping(path)
    for key, value in sets.items():
        set_path(data, key.split("."), value, source=str(spec_path))
    return path, data


class KeyedValueError(ValueError):
    """A validation error about one key below the validated field (names it in the message)."""

    def __init__(self, key: str, value: object, expected: str):
        super().__init__(expected)
        self.key, self.value = key, value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)


class Dist(_Strict):
    """A distribution of a patient quantity; a bare number means ``fixed``.

    ``normal`` uses ``mean``/``sd``; ``lognormal`` uses ``median``/``sd_log``; ``uniform``
    and ``loguniform`` use ``low``/``high``. ``low``/``high`` also clip ``normal`` and ``lognormal`` draws.
    ``choice`` draws one of ``values`` with probabilities in proportion to ``weights`` (equal
    if omitted): dose levels with the patients spread over them, e.g. ``weights: [3, 3, 6]``.
    """

    dist: Literal["fixed", "normal", "lognormal", "uniform", "loguniform", "choice"] = "fixed"
    value: float | None = None
    mean: float | None = None
    sd: float | None = Field(None, ge=0)
    median: float | None = Field(None, gt=0)
    sd_log: float | None = Field(None, ge=0)
    low: float | None = None
    high: float | None = None
    values: list[float] | None = Field(None, min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: Any) -> Any:
        data = yaml_number(data)
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return {"dist": "fixed", "value": data}
        return data

    @model_validator(mode="after")
    def _check_fields(self) -> Dist:
        need = {
            "fixed": ("value",),
            "normal": ("mean", "sd"),
            "lognormal": ("median", "sd_log"),
            "uniform": ("low", "high"),
            "loguniform": ("low", "high"),
            "choice": ("values",),
        }[self.dist]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.dist} distribution needs {', '.join(missing)}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError("low must not exceed high")
        if self.dist == "loguniform" and self.low <= 0:
            raise ValueError("a loguniform distribution needs low > 0")
        if self.weights is not None and (
            self.values is None or len(self.weights) != len(self.values) or min(self.weights) < 0 or sum(self.weights) <= 0
        ):
            raise ValueError("weights: one non-negative weight per value, not all zero")
        return self

    def support(self) -> tuple[float, float]:
        """Smallest and largest value a draw can take."""
        if self.dist == "fixed":
            return self.value, self.value
        if self.dist == "choice":
            return min(self.values), max(self.values)
        lo = self.low if self.low is not None else (0.0 if self.dist == "lognormal" else -math.inf)
        hi = self.high if self.high is not None else math.inf
        return lo, hi


def _dist_in(d: Dist, lo: float, hi: float, what: str, strict_low: bool = False) -> Dist:
    a, b = d.support()
    if a < lo or b > hi or (strict_low and a <= lo):
        low = f"> {lo:g}" if strict_low else f">= {lo:g}"
        if d.dist == "fixed":
            raise ValueError(f"{what} {low} and <= {hi:g}")
        raise ValueError(f"{what} {low} and <= {hi:g} (set low/high to bound it); this one allows [{a:g}, {b:g}]")
    return d


class AntigenPopulation(_Strict):
    """Population overrides of one atlas antigen (for example CD19 in t(8;21) AML)."""

    aml_positive_fraction: float | None = Field(None, ge=0, le=1)
    blast_median: float | None = Field(None, gt=0)
    lsc_median: float | None = Field(None, ge=0)
    between_patient_log_sd: float | None = Field(None, ge=0)
    within_patient_log_sd: float | None = Field(None, ge=0)
    negative_fraction: float | None = Field(None, ge=0, le=1)
    negative_fraction_log_sd: float | None = Field(None, ge=0)


class Patient(_Strict):
    """Distributions of the patient population."""

    weight_kg: Dist = Dist(dist="normal", mean=70, sd=15, low=40, high=120)
    bm_blast_fraction: Dist = Dist(dist="uniform", low=0.1, high=0.7)
    blast_doubling_days: Dist = Dist(dist="lognormal", median=14, sd_log=0.4, low=5, high=60)
    anc_baseline_1e9_per_l: Dist = Dist(dist="lognormal", median=1.0, sd_log=0.8, low=0.05, high=10)
    # Stahl 2018 Blood Adv 2:923: r/r AML before salvage, median 40e9/L (range 0.6-810)
    platelets_baseline_1e9_per_l: Dist = Dist(dist="lognormal", median=40, sd_log=1.0, low=1, high=800)
    product_fitness: Dist = Dist(dist="lognormal", median=1.0, sd_log=0.5, low=0.05, high=20)
    # assumed: adults as early-phase AML CAR T trials enrol them (18 and over; pediatric arms set their own)
    age_years: Dist = Dist(dist="normal", mean=45, sd=15, low=18, high=80)
    # assumed: patient-level variability of the myeloid inflammatory response (Hay 2017: baseline
    # inflammation and endothelial activation predict severe CRS); multiplies macrophage activation
    inflammatory_reactivity: Dist = Dist(dist="lognormal", median=1.0, sd_log=0.7, low=0.05, high=20)
    emd_probability: float = Field(0.0, ge=0, le=1)
    prior_hsct_probability: float = Field(0.0, ge=0, le=1)
    emd_blasts: Dist = Dist(dist="lognormal", median=1e9, sd_log=1.0, low=1e6, high=1e11)
    antigens: dict[str, AntigenPopulation] = {}

    @field_validator("weight_kg")
    @classmethod
    def _weight(cls, d: Dist) -> Dist:
        return _dist_in(d, 0.0, 500.0, "a weight", strict_low=True)

    @field_validator("age_years")
    @classmethod
    def _age(cls, d: Dist) -> Dist:
        return _dist_in(d, 0.0, 120.0, "an age in years")

    @field_validator("bm_blast_fraction")
    @classmethod
    def _blasts(cls, d: Dist) -> Dist:
        return _dist_in(d, 0.0, 0.99, "a fraction")

    @field_validator(
        "blast_doubling_days",
        "anc_baseline_1e9_per_l",
        "platelets_baseline_1e9_per_l",
        "product_fitness",
        "inflammatory_reactivity",
        "emd_blasts",
    )
    @classmethod
    def _positive(cls, d: Dist) -> Dist:
        return _dist_in(d, 0.0, math.inf, "a value", strict_low=True)

    @field_validator("antigens")
    @classmethod
    def _known_antigens(cls, v: dict[str, AntigenPopulation]) -> dict[str, AntigenPopulation]:
        for name in v:
            _check_antigen(name)
        return v


def _check_antigen(name: str) -> str:
    known = default_atlas().names
    if name not in known:
        raise ValueError(f"an antigen of the atlas: one of {', '.join(known)}{did_you_mean(name, known)}")
    return name


def _check_antigens(names: list[str]) -> list[str]:
    for name in names:
        _check_antigen(name)
    return names


class Car(_Strict):
    """The activating CAR: one antigen, or two with OR / AND logic."""

    antigens: list[str] = Field(min_length=1, max_length=2)
    logic: Literal["single", "or", "and"] = "single"

    @field_validator("antigens")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        _check_antigens(v)
        if len(set(v)) != len(v):
            raise ValueError("two different antigens")
        return v

    @model_validator(mode="after")
    def _logic_matches(self) -> Car:
        if (self.logic == "single") != (len(self.antigens) == 1):
            raise ValueError("logic 'single' with one antigen, or 'or'/'and' with two")
        return self


class Icar(_Strict):
    """An inhibitory CAR (NOT gate) on one antigen; I_max and threshold default to the parameter set."""

    antigen: str
    imax: float | None = Field(None, ge=0, le=1)
    k_molecules: float | None = Field(None, gt=0)

    @field_validator("antigen")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_antigen(v)


class Infusion(_Strict):
    """One infusion of a split or repeated dose: its day and its share of the product's dose."""

    day: float = Field(ge=0, le=3650, description="days after the first infusion (day 0)")
    fraction: float | None = Field(None, gt=0, le=1, description="share of product.dose_cells_per_kg")
    dose_cells_per_kg: float | None = Field(None, gt=0, le=1e12, description="or the cells/kg of this infusion")

    @model_validator(mode="after")
    def _one_amount(self) -> Infusion:
        if (self.fraction is None) == (self.dose_cells_per_kg is None):
            raise ValueError("either fraction or dose_cells_per_kg")
        return self


class Product(_Strict):
    """The CAR T product and its dose (all on day 0, or split over ``infusions``)."""

    car: Car
    icar: Icar | None = None
    costimulation: Literal["4-1BB", "CD28", "CD28_SAVVY"] = "4-1BB"
    armoring: Literal["none", "IL-18"] = "none"
    manufacturing: Literal["standard", "dasatinib"] = "standard"
    source: Literal["autologous", "hsct_donor", "third_party"] = Field(
        "autologous", description="whose T cells: the patient's, the patient's HSCT donor's, or a third party's"
    )
    tcr: Literal["intact", "knocked_out", "retained_er"] | None = Field(
        None, description="the product's own TCR (default: knocked_out for third_party, else intact)"
    )
    hla_mismatches: int | None = Field(
        None,
        ge=0,
        le=10,
        description="third_party only: mismatched alleles of 10 (HLA-A, -B, -C, -DRB1, -DQB1); more are rejected faster "
        "(default: params.hla_mismatches_third_party)",
    )
    dose_cells_per_kg: Dist
    memory_fraction: float = Field(0.3, ge=0, le=1)
    activation_threshold_factor: float = Field(
        1.0,
        gt=0,
        le=100,
        description="binder: scales the density thresholds of killing and cytokine release (<1: more sensitive)",
    )
    knockout: list[str] = Field([], description="antigens edited out of the product's T cells (no fratricide through them)")
    infusions: list[Infusion] | None = Field(
        None,
        min_length=1,
        description="split or repeated dosing, e.g. [{day: 0, fraction: 0.1}, {day: 1, fraction: 0.3}, {day: 2, fraction: 0.6}]",
    )
    hold_infusions_at_crs_grade: int | None = Field(
        None, ge=1, le=4, description="infusions after the first are held once CRS reaches this grade (Frey 2020: early CRS)"
    )

    _known_knockouts = field_validator("knockout")(classmethod(lambda cls, v: _check_antigens(v)))

    @field_validator("dose_cells_per_kg")
    @classmethod
    def _positive_dose(cls, d: Dist) -> Dist:
        return _dist_in(d, 0.0, 1e12, "a dose in CAR+ cells/kg", strict_low=True)

    @model_validator(mode="before")
    @classmethod
    def _old_donor_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "donor" in data:
            data = dict(data)
            donor = data.pop("donor")
            warnings.warn(
                "product.donor is deprecated: write product.source (autologous, hsct_donor, third_party) and "
                "product.tcr (intact, knocked_out, retained_er); donor: allogeneic reads as third_party, knocked_out",
                FutureWarning,
                stacklevel=2,
            )
            if donor not in ("autologous", "allogeneic"):
                raise KeyedValueError("donor", donor, "autologous or allogeneic (deprecated: use source and tcr)")
            data["source"] = "third_party" if donor == "allogeneic" else "autologous"  # the old key says it outright
        return data

    @model_validator(mode="after")
    def _default_tcr(self) -> Product:
        if self.tcr is None:  # set without re-validating (validate_assignment would run this again)
            self.__dict__["tcr"] = "knocked_out" if self.source == "third_party" else "intact"
        if self.hla_mismatches is not None and self.source != "third_party":
            raise KeyedValueError(
                "hla_mismatches", self.hla_mismatches, "no HLA mismatch count unless source is third_party (the "
                "patient's own cells and the HSCT donor's are not rejected)"
            )  # fmt: skip
        return self

    @field_validator("infusions")
    @classmethod
    def _infusion_schedule(cls, v: list[Infusion] | None, info: ValidationInfo) -> list[Infusion] | None:
        if v is None:
            return v
        days = [i.day for i in v]
        if days[0] != 0.0 or any(b <= a for a, b in zip(days, days[1:], strict=False)):
            raise KeyedValueError("day", days, "increasing days starting on day 0 (days count from the first infusion)")
        kinds = {i.fraction is None for i in v}
        if len(kinds) > 1:
            raise KeyedValueError("fraction", days, "every infusion as a fraction, or every one in cells/kg")
        if v[0].fraction is not None and abs(sum(i.fraction for i in v) - 1.0) > 1e-6:
            raise KeyedValueError("fraction", [i.fraction for i in v], "fractions that add up to 1")
        dose = info.data.get("dose_cells_per_kg")
        if v[0].fraction is None and dose is not None:
            total = sum(i.dose_cells_per_kg for i in v)
            if dose.dist != "fixed" or not math.isclose(dose.value, total, rel_tol=1e-6):
                fixed = f" ({dose.value:g})" if dose.dist == "fixed" else ", which must then be a fixed dose"
                raise KeyedValueError("dose_cells_per_kg", total, f"infusions that add up to product.dose_cells_per_kg{fixed}")
        return v

    @field_validator("hold_infusions_at_crs_grade")
    @classmethod
    def _hold_needs_a_schedule(cls, grade: int | None, info: ValidationInfo) -> int | None:
        infusions = info.data.get("infusions")
        if grade is not None and (infusions is None or len(infusions) < 2):
            raise ValueError("product.infusions with at least two infusions (nothing to hold otherwise)")
        return grade

    def infusion_schedule(self) -> tuple[list[float], list[float]]:
        """Days and shares of the dose: one infusion on day 0 unless ``infusions`` split it."""
        if self.infusions is None:
            return [0.0], [1.0]
        amounts = [i.fraction if i.fraction is not None else i.dose_cells_per_kg for i in self.infusions]
        return [i.day for i in self.infusions], [a / sum(amounts) for a in amounts]

    @field_validator("icar")
    @classmethod
    def _icar_not_on_car(cls, icar: Icar | None, info: ValidationInfo) -> Icar | None:
        car = info.data.get("car")
        if icar is not None and car is not None and icar.antigen in car.antigens:
            raise KeyedValueError(
                "antigen",
                icar.antigen,
                f"an iCAR antigen other than the CAR antigens {car.antigens} "
                "(an iCAR on the CAR's own antigen vetoes every target)",
            )
        return icar


class Lymphodepletion(_Strict):
    """Fludarabine/cyclophosphamide before infusion (days relative to infusion on day 0)."""

    enabled: bool = True
    start_day: float = Field(-5.0, le=0)
    days: float = Field(3.0, gt=0, le=10)


class CarTElimination(_Strict):
    """Eliminating the CAR T cells: a suicide switch or a depleting antibody, given once by rule.

    ``icasp9_dimerizer``: inducible caspase 9 and AP1903/rimiducid (minutes);
    ``anti_tag_antibody``: cetuximab on truncated EGFR or rituximab on CD20 (days). ``fraction``
    and ``hours`` default to the agent's parameters.
    """

    agent: Literal["icasp9_dimerizer", "anti_tag_antibody"]
    at_crs_grade: int | None = Field(None, ge=1, le=4)
    at_icans_grade: int | None = Field(None, ge=1, le=4)
    on_day: float | None = Field(None, ge=0, description="or on this day whatever happens (e.g. before HSCT)")
    fraction: float | None = Field(None, gt=0, lt=1, description="share of CAR T cells it removes")
    hours: float | None = Field(None, gt=0, le=720, description="over how many hours")

    @model_validator(mode="after")
    def _a_trigger(self) -> CarTElimination:
        if self.at_crs_grade is None and self.at_icans_grade is None and self.on_day is None:
            raise ValueError("a trigger: at_crs_grade, at_icans_grade or on_day")
        return self


class Interventions(_Strict):
    """Rule-based interventions: tocilizumab, corticosteroids, platelet transfusion, consolidating allo-HSCT."""

    tocilizumab_at_crs_grade: int | None = Field(2, ge=1, le=4)
    steroids_at_crs_grade: int | None = Field(3, ge=1, le=4)
    steroids_at_icans_grade: int | None = Field(2, ge=1, le=4)
    platelet_transfusion_below_1e9_per_l: float | None = Field(
        10.0, ge=0, le=1000, description="prophylactic platelet transfusion below this count (Schiffer 2018 ASCO: 10)"
    )
    consolidation_hsct_day: float | None = Field(None, gt=0, description="allo-HSCT on this day if in remission")
    rescue_hsct_day: float | None = Field(
        None, gt=0, description="allo-HSCT on this day whatever the response (e.g. after a CD45 CAR)"
    )
    car_t_elimination: CarTElimination | None = None


class HsctRule(_Strict):
    """Consolidating allo-HSCT by rule: who is assessed on ``assess_day``, transplanted on ``day``.

    ``who``: ``responders`` (marrow blasts < 5%, none in blood, no EMD: CR, CRh, CRi or MLFS),
    ``mrd_negative`` (responders below ``outputs.mrd_sensitivity``) or ``all``; optionally only
    those whose ANC is still below ``anc_below_1e9_per_l`` (bridging prolonged agranulocytosis).
    """

    who: Literal["responders", "mrd_negative", "all"] = "responders"
    assess_day: float = Field(28.0, ge=0, le=3650)
    anc_below_1e9_per_l: float | None = Field(None, gt=0, le=100)
    day: float = Field(gt=0, le=3650, description="transplant day (days after the first infusion)")
    conditioning: Literal["myeloablative", "reduced_intensity"] = "myeloablative"

    @model_validator(mode="after")
    def _after_assessment(self) -> HsctRule:
        if self.day < self.assess_day:
            raise KeyedValueError("day", self.day, f"a transplant day on or after assess_day ({self.assess_day:g})")
        return self


class Consolidation(_Strict):
    """What follows the CAR T cells (supersedes ``interventions.consolidation_hsct_day``)."""

    hsct: HsctRule | None = None


class Adjuvant(_Strict):
    """A small-molecule adjuvant that multiplies target antigen density on blasts for a period (assumed effect)."""

    antigens: list[str] = Field(min_length=1)
    fold: float = Field(gt=0, le=100)
    start_day: float
    end_day: float

    _known = field_validator("antigens")(classmethod(lambda cls, v: _check_antigens(v)))

    @field_validator("end_day")
    @classmethod
    def _after_start(cls, end: float, info: ValidationInfo) -> float:
        start = info.data.get("start_day")
        if start is not None and end <= start:
            raise ValueError(f"an end_day after start_day ({start:g})")
        return end


class Resolution(_Strict):
    """Agents per kind: super-individuals are split or merged to stay near these counts.

    CAR T agents carry no property a rule reads beyond compartment and phenotype, so agents
    of one group are exchangeable and their number changes no distribution (a sum of
    binomials with one probability is a binomial); blast agents carry antigen densities
    (stratified samples of the patient's distribution). ``tests/test_hybrid.py`` checks
    that these defaults give the outcome distributions of 1000 agents per kind.
    """

    car_t_agents: int = Field(64, ge=4, le=1_000_000)
    blast_agents: int = Field(256, ge=4, le=1_000_000)


class Outputs(_Strict):
    """What a run records."""

    record_every_hours: float = Field(1.0, gt=0)
    mrd_sensitivity: float = Field(
        1e-3,
        gt=0,
        lt=1,
        description="flow MRD detection limit among marrow nucleated cells (ELN 2021: 1e-3; 1e-4 with more events)",
    )


class TrialArm(_Strict):
    """The reported trial arm a scenario stands for (``clinical_targets.yaml``)."""

    study: str
    arm: str
    patients: int | None = Field(None, ge=1)
    abstract: str = ""


class Scenario(_Strict):
    """One arm: the product, the population and the simulation settings."""

    name: str = Field(min_length=1)
    description: str = ""
    source: str = ""
    trial: TrialArm | None = None
    seed: int = Field(0, ge=0)
    horizon_days: float = Field(28.0, gt=0, le=3650)
    dt_hours: float = Field(1.0, gt=0, le=24)
    patient: Patient = Patient()
    product: Product
    lymphodepletion: Lymphodepletion = Lymphodepletion()
    interventions: Interventions = Interventions()
    consolidation: Consolidation = Consolidation()
    adjuvant: Adjuvant | None = None
    resolution: Resolution = Resolution()
    outputs: Outputs = Outputs()
    params: dict[str, float] = {}

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, name: str) -> str:
        # the name becomes an output folder (results/<name>): no path, no control characters
        bad = any(c in name for c in "/\\") or name.startswith(".") or any(ord(c) < 32 for c in name)
        if bad:
            raise ValueError("a name usable as a folder name: no '/' or '\\', no leading '.', no control characters")
        return name

    @field_validator("params")
    @classmethod
    def _known_params(cls, v: dict[str, float]) -> dict[str, float]:
        for name, value in v.items():
            if name not in PARAMETERS:
                expected = "a parameter name of sim.params (list them with `cart-sim params`)" + did_you_mean(name, PARAMETERS)
                raise KeyedValueError(name, value, expected)
            p = PARAMETERS[name]
            if not (p.low <= value <= p.high) or not math.isfinite(value):
                raise KeyedValueError(name, value, f"a finite value within [{p.low:g}, {p.high:g}] {p.unit}")
        return v

    @field_validator("product")
    @classmethod
    def _donor_product_needs_a_transplant(cls, product: Product, info: ValidationInfo) -> Product:
        patient = info.data.get("patient")
        if product.source == "hsct_donor" and patient is not None and patient.prior_hsct_probability < 1.0:
            raise KeyedValueError(
                "source",
                "hsct_donor",
                "patients all transplanted before (patient.prior_hsct_probability: 1) for a product from their HSCT donor",
            )
        return product

    @field_validator("lymphodepletion")
    @classmethod
    def _lymphodepletion_before_infusion(cls, ld: Lymphodepletion) -> Lymphodepletion:
        if ld.enabled and ld.start_day + ld.days > 0.0:
            raise KeyedValueError(
                "days", ld.days, f"lymphodepletion over by day 0, the first infusion (start_day {ld.start_day:g} + days)"
            )
        return ld

    @field_validator("consolidation")
    @classmethod
    def _one_hsct_rule(cls, c: Consolidation, info: ValidationInfo) -> Consolidation:
        iv = info.data.get("interventions")
        if c.hsct is not None and iv is not None and iv.consolidation_hsct_day is not None:
            raise KeyedValueError(
                "hsct", "both", "one HSCT rule: consolidation.hsct, or the older interventions.consolidation_hsct_day"
            )
        return c

    @field_validator("dt_hours")
    @classmethod
    def _dt_within_horizon(cls, dt: float, info: ValidationInfo) -> float:
        horizon = info.data.get("horizon_days")
        if horizon is not None and dt > horizon * 24:
            raise ValueError(f"a step no longer than the horizon ({horizon * 24:g} h)")
        return dt

    @field_validator("outputs")
    @classmethod
    def _record_after_step(cls, outputs: Outputs, info: ValidationInfo) -> Outputs:
        dt = info.data.get("dt_hours")
        if dt is not None and outputs.record_every_hours < dt:
            raise ValueError(f"record_every_hours of at least dt_hours ({dt:g})")
        return outputs


# --------------------------------------------------------------------------- loading


def _expected_mapping(err: dict, loc: tuple) -> str:
    """What a key that needs a mapping expects, in the scenario's words (not pydantic's class names)."""
    if "Dist" in err["msg"]:
        return "a number, or a distribution such as {dist: lognormal, median: 70, sd_log: 0.2}"
    allowed = _allowed_keys(tuple(p for p in loc if isinstance(p, str)))
    return f"a mapping of keys ({', '.join(allowed)})" if allowed else "a mapping of keys"


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names allowed at ``loc`` in the schema (for 'did you mean')."""
    model: Any = Scenario
    for part in loc:
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            return []
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        nested = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested and args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel):
            nested = [args[-1]]
        model = nested[0] if nested else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _first_error(exc: ValidationError, source: str) -> UserError:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = ".".join(str(p) for p in loc)
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        expected = "no such key" + did_you_mean(loc[-1], allowed)
        expected += f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return UserError(source, path, value, expected)
    if err["type"] == "missing":
        # a misspelt required key shows up twice: missing, and as an unknown key beside it
        extras = [e["loc"][-1] for e in exc.errors() if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == loc[:-1]]
        hint = difflib.get_close_matches(str(loc[-1]), [str(x) for x in extras], n=1)
        found = f" (found {hint[0]!r}: misspelt?)" if hint else ""
        return UserError(source, path, None, "this required key to be given" + found)
    keyed = (err.get("ctx") or {}).get("error")
    if isinstance(keyed, KeyedValueError):
        return UserError(source, f"{path}.{keyed.key}", keyed.value, str(keyed))
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return UserError(source, path, value, _expected_mapping(err, loc))
    msg = err["msg"].removeprefix("Value error, ")
    if msg.startswith("Input should be "):
        msg = msg.removeprefix("Input should be ")
        if msg.startswith(("greater", "less")):
            msg = "a value " + msg
    return UserError(source, path, value, msg[0].lower() + msg[1:] if msg else "a valid value")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``dotted.path=value``; the value is read as YAML (so ``1e6`` is a number).

    Raises:
        UserError: If ``text`` has no ``=`` or an empty path.
    """
    if "=" not in text:
        raise UserError("--set", text, text, "dotted.path=value, for example product.dose_cells_per_kg=3e6")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError("--set", key, text, "a dotted path of keys, for example patient.weight_kg=70")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return parts, yaml_number(value)


def related_paths(path: str, key_path: str) -> bool:
    """Whether an error at ``key_path`` concerns the value set at ``path`` (one contains the other)."""
    return key_path == path or key_path.startswith(path + ".") or path.startswith(key_path + ".")


def schema_default(parts: list[str]) -> dict:
    """The schema's default of the section at ``parts`` as raw data (``{}`` where it has none).

    Setting one key of a section the file leaves out (``patient.weight_kg.sd``) then
    changes that key of the default and keeps the others.
    """
    model: Any = Scenario
    default: Any = None
    for part in parts:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None or field.is_required():
            return {}
        default, model = field.get_default(call_default_factory=True), field.annotation
    return default.model_dump(mode="json", exclude_none=True) if isinstance(default, BaseModel) else {}


def set_path(data: dict, parts: list[str], value: Any, source: str = "--set") -> None:
    """Set ``data[parts[0]][parts[1]]... = value`` in raw scenario data, creating sections.

    A section the data leave out starts from its schema default (:func:`schema_default`).

    Raises:
        UserError: If a key on the way holds a value rather than a section.
    """
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            node[part] = nxt = schema_default(parts[: i + 1])
        elif not isinstance(nxt, dict):
            raise UserError(source, ".".join(parts[: i + 1]), nxt, "a section with keys to set")
        node = nxt
    node[parts[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of raw scenario ``data`` with ``--set`` overrides applied."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        set_path(out, *parse_override(text))
    return out


def read_yaml_mapping(path: str | Path) -> dict:
    """Read a YAML file that must hold a mapping; every failure is a :class:`UserError`."""
    p = Path(path)
    if not p.exists():
        raise UserError(str(p), "", str(p), "an existing file")
    if p.is_dir():
        raise UserError(str(p), "", str(p), "a file, not a directory")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(str(p), "", str(p), f"a readable UTF-8 text file ({e.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = f": {e.problem}" if getattr(e, "problem", None) else ""
        raise UserError(str(p), "", text[:40], f"valid YAML{where}{reason}") from None
    if data is None:
        raise UserError(str(p), "", "", "a YAML mapping of scenario keys; the file is empty")
    if not isinstance(data, dict):
        raise UserError(str(p), "", data, f"a YAML mapping of keys, not a {type(data).__name__}")
    return data


def validate(data: dict, source: str) -> Scenario:
    """Validate raw scenario ``data``; errors name ``source`` and the key path."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise _first_error(e, source) from None


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Load and validate a scenario file with optional ``--set`` overrides.

    Args:
        path: The scenario YAML.
        overrides: ``dotted.path=value`` strings applied before validation.

    Returns:
        The validated scenario.

    Raises:
        UserError: On a missing, unreadable or invalid file or override.

    Example:
        >>> s = load_scenario("scenarios/cll1_standard.yaml", ["product.dose_cells_per_kg=3e6"])
        >>> s.product.dose_cells_per_kg.value
        3000000.0
    """
    data = read_yaml_mapping(path)
    if overrides:
        data = apply_overrides(data, overrides)
        try:
            Scenario.model_validate(data)
        except ValidationError as e:
            err = _first_error(e, str(path))
            touched = {".".join(parse_override(o)[0]) for o in overrides}
            if any(related_paths(t, err.key_path) for t in touched):
                raise UserError(f"--set (on {path})", err.key_path, err.value, err.expected) from None
            raise err from None
    return validate(data, str(path))


def json_schema() -> dict:
    """The JSON Schema of a scenario file (for editors)."""
    return Scenario.model_json_schema()


def with_param_set(sc: Scenario, values: dict[str, float] | None) -> Scenario:
    """``sc`` with a parameter set as its base; the scenario's own ``params`` still win."""
    if not values:
        return sc
    return sc.model_copy(update={"params": {**values, **sc.params}})
