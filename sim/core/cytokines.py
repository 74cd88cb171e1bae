"""Phase 5: cytokines per compartment (concentrations in pg/mL).

* IFN-gamma: released per cytokine-level engagement (``p_ifn`` pg), raised by IL-18 above
  baseline (gain ``b``: the product's ``il18_boost_max``, scaled by ``il18_response_unarmored``
  unless it is armored); plus, without antigen, ``byst_fg`` fg per CAR T cell per hour at
  macrophage-activation-syndrome IL-18 (bystander activation, Hill 4, half at ``byst_half_sat``
  above baseline; 0 = off);
* macrophage activation ``M`` in [0, 1]: driven by IFN-gamma (Hill 3, half-saturation ``K``: a storm, not
  chronic low-level activation) and IL-18, and by dying target cells (Hill 2 in the body's deaths
  per hour per mL of its compartments, as DAMPs circulate: pyroptotic blasts release DAMPs that
  activate macrophages, Liu Y 2020 Sci Immunol 5:eaax7969; macrophages and monocytes are the
  source of CRS IL-6 and IL-1, Giavridis 2018 and Norelli 2018 Nat Med 24:731/739), so CRS grows
  with the tumor burden cleared; decays at ``k_dec``;
* IL-6: relaxes to ``base + il6_max * M * mono`` where ``mono`` is the monocyte/macrophage
  mass relative to baseline;
* IL-18: baseline times ``1 + (fold - 1) M`` plus armored CAR T secretion.

Each pool is cleared first order (exact exponential step); compartments then exchange
toward their volume-weighted mean. ``damp`` (steroids) scales production, and the
macrophage drive by ``macrophage_steroid_sensitivity`` of it (macrophages can be steroid-refractory).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from numba import njit

from sim.core.common import N_COMP, hill, relax

IL6, IFNG, IL18, MAC = 0, 1, 2, 3


class CytokineConst(NamedTuple):
    """Constants of the cytokine fields (per patient and product)."""

    ifng_pg_per_engagement: float
    k_il6_per_h: float  # IL-6 clearance (ln 2 / half-life)
    k_ifng_per_h: float
    k_il18_per_h: float
    il6_baseline_pg_per_ml: float
    il18_baseline_pg_per_ml: float
    il6_max_pg_per_ml: float
    macrophage_activation_per_h: float  # times the patient's inflammatory reactivity
    macrophage_ifng_half_sat_pg_per_ml: float
    macrophage_decay_per_h: float
    il18_macrophage_fold: float
    armor_fg_per_cell_h: float  # IL-18 secreted by an armored product (0: not armored)
    il18_half_sat_pg_per_ml: float
    il18_boost_max: float  # IL-18 gain (0: no response)
    exchange_per_h: float  # between compartments
    bystander_fg_per_cell_h: float  # IFN-gamma of CAR T cells activated by IL-18 alone
    bystander_il18_half_sat_pg_per_ml: float
    macrophage_steroid_sensitivity: float  # 0: steroids do not damp macrophage activation
    macrophage_kill_half_sat_per_ml_h: float  # target-cell deaths per mL per hour at half that drive


def age_fold(per_decade: float, age_years: float) -> float:
    """Macrophage reactivity at ``age_years`` relative to a 40-year-old (log-linear in decades)."""
    return math.exp(per_decade * (age_years - 40.0) / 10.0)


@njit(cache=True)
def nb_update_cytokines(dt, k, cyt, engagements_per_h, car_t_cells, deaths_per_ml_h, volume_l, present, mono_factor, damp):
    """Advance cytokine pools ``cyt[compartment, pool]`` in place, in sub-steps of at most 0.1 h.

    ``engagements_per_h``: this step's cytokine-level engagements per compartment;
    ``car_t_cells``: CAR T cells per compartment; ``deaths_per_ml_h``: cells killed per hour
    per mL of the body's compartments; ``mono_factor``: monocyte/macrophage mass relative to
    baseline; ``damp``: steroid damping of production.
    """
    n_sub = int(math.ceil(dt / 0.1))
    h = dt / n_sub
    for _ in range(n_sub):
        for c in range(N_COMP):
            if present[c]:
                produce_and_clear(
                    h, k, cyt, c, engagements_per_h[c], car_t_cells[c], deaths_per_ml_h, volume_l[c] * 1e3, mono_factor, damp
                )
        exchange(h, k, cyt, volume_l, present)


@njit(cache=True)
def produce_and_clear(dt, k, cyt, c, engagements_per_h, car_t_cells, deaths_per_ml_h, v_ml, mono_factor, damp):
    """One sub-step of production, macrophage activation and first-order clearance in compartment ``c``.

    Steroids damp macrophage activation by ``macrophage_steroid_sensitivity`` of their damping.
    """
    il18_gain = il18_boost(k, cyt[c, IL18]) if k.il18_boost_max > 0.0 else 1.0
    ifn_prod = k.ifng_pg_per_engagement * engagements_per_h * il18_gain * damp / v_ml
    if k.bystander_fg_per_cell_h > 0.0:
        ifn_prod += bystander_ifng(k, car_t_cells, cyt[c, IL18] - k.il18_baseline_pg_per_ml) * damp / v_ml
    cyt[c, IFNG] = relax(cyt[c, IFNG], ifn_prod / k.k_ifng_per_h, k.k_ifng_per_h, dt)
    mac_damp = 1.0 - k.macrophage_steroid_sensitivity * (1.0 - damp)
    drive = macrophage_drive(k, cyt[c, IFNG], il18_gain, deaths_per_ml_h) * mac_damp
    cyt[c, MAC] = relax(cyt[c, MAC], drive / (drive + k.macrophage_decay_per_h), drive + k.macrophage_decay_per_h, dt)
    cyt[c, IL6] = relax(cyt[c, IL6], il6_target(k, cyt[c, MAC], mono_factor), k.k_il6_per_h, dt)
    cyt[c, IL18] = relax(cyt[c, IL18], il18_target(k, cyt[c, MAC], car_t_cells, v_ml), k.k_il18_per_h, dt)


@njit(cache=True)
def deaths_per_ml_h(deaths_per_h, volume_l, present):
    """Target cells dying per hour per mL of the body's present compartments (DAMPs circulate)."""
    litres = 0.0
    for c in range(volume_l.shape[0]):
        if present[c]:
            litres += volume_l[c]
    return deaths_per_h / litres / 1e3


@njit(cache=True)
def macrophage_drive(k, ifng, il18_gain, deaths_per_ml_h):
    """Activation rate (1/h) of resting macrophages: IFN-gamma (times the IL-18 gain) and dying targets."""
    by_ifng = hill(ifng, k.macrophage_ifng_half_sat_pg_per_ml, 3.0) * il18_gain
    by_deaths = hill(deaths_per_ml_h, k.macrophage_kill_half_sat_per_ml_h, 2.0)
    return k.macrophage_activation_per_h * (by_ifng + by_deaths)


@njit(cache=True)
def il6_target(k, mac, mono_factor):
    """IL-6 (pg/mL) that activated monocytes and macrophages sustain."""
    return k.il6_baseline_pg_per_ml + k.il6_max_pg_per_ml * mac * mono_factor


@njit(cache=True)
def il18_target(k, mac, car_t_cells, v_ml):
    """IL-18 (pg/mL) sustained by activated macrophages and an armored product's secretion."""
    armor = k.armor_fg_per_cell_h * 1e-3 * car_t_cells / v_ml / k.k_il18_per_h
    return k.il18_baseline_pg_per_ml * (1.0 + (k.il18_macrophage_fold - 1.0) * mac) + armor


@njit(cache=True)
def exchange(dt, k, cyt, volume_l, present):
    """Move each pool of present compartments toward their volume-weighted mean."""
    vol = 0.0
    for c in range(N_COMP):
        if present[c]:
            vol += volume_l[c]
    mix = 1.0 - math.exp(-k.exchange_per_h * dt)
    for p in range(3):
        mean = 0.0
        for c in range(N_COMP):
            if present[c]:
                mean += cyt[c, p] * volume_l[c]
        mean /= vol
        for c in range(N_COMP):
            if present[c]:
                cyt[c, p] += (mean - cyt[c, p]) * mix


@njit(cache=True)
def bystander_ifng(k, car_t_cells, il18_excess):
    """IFN-gamma (pg/h) of CAR T cells activated by IL-18 alone: Hill 4 in IL-18 above baseline."""
    return k.bystander_fg_per_cell_h * 1e-3 * car_t_cells * hill(il18_excess, k.bystander_il18_half_sat_pg_per_ml, 4.0)


@njit(cache=True)
def il18_boost(k, il18):
    """Boost ``1 + b * excess / (excess + K)`` from IL-18 above baseline (``b = 0``: no response)."""
    e = max(0.0, il18 - k.il18_baseline_pg_per_ml)
    return 1.0 + k.il18_boost_max * e / (e + k.il18_half_sat_pg_per_ml)


@njit(cache=True)
def nb_il18_boost(k, cyt, out):
    """Fill ``out[c]`` with the IL-18 proliferation boost of each compartment."""
    for c in range(out.shape[0]):
        out[c] = il18_boost(k, cyt[c, IL18])
