"""Phase 5: cytokines per compartment (concentrations in pg/mL).

* IFN-gamma: released per cytokine-level engagement (``p_ifn`` pg), raised by IL-18 above
  baseline (gain ``b``: the product's ``il18_boost_max``, scaled by ``il18_response_unarmored``
  unless it is armored); plus, without antigen, ``byst_fg`` fg per CAR T cell per hour at
  macrophage-activation-syndrome IL-18 (bystander activation, Hill 4, half at ``byst_half_sat``
  above baseline; 0 = off);
* macrophage activation ``M`` in [0, 1]: driven by IFN-gamma (Hill 3, half-saturation ``K``: a storm, not
  chronic low-level activation) and
  IL-18, decays at ``k_dec``;
* IL-6: relaxes to ``base + il6_max * M * mono`` where ``mono`` is the monocyte/macrophage
  mass relative to baseline;
* IL-18: baseline times ``1 + (fold - 1) M`` plus armored CAR T secretion.

Each pool is cleared first order (exact exponential step); compartments then exchange
toward their volume-weighted mean. ``damp`` (steroids) scales production; ``mac_damp``
scales the macrophage drive (``damp`` unless macrophages are steroid-refractory).
"""

from __future__ import annotations

import math

from numba import njit

from sim.core.common import N_COMP, hill, relax

IL6, IFNG, IL18, MAC = 0, 1, 2, 3


@njit(cache=True)
def nb_update_cytokines(
    dt,
    cyt,
    sigma,
    t_engaged,
    car_t_cells,
    volume_l,
    present,
    mono_factor,
    damp,
    p_ifn,
    k_il6,
    k_ifn,
    k_il18,
    il6_base,
    il18_base,
    il6_max,
    k_act,
    k_mac,
    k_dec,
    il18_fold,
    armor_fg,
    il18_half_sat,
    il18_boost_max,
    k_exchange,
    byst_fg,
    byst_half_sat,
    mac_damp,
):
    """Advance cytokine pools in place, in sub-steps of at most 0.1 h (fast clearance and exchange)."""
    n_sub = int(math.ceil(dt / 0.1))
    h = dt / n_sub
    for _ in range(n_sub):
        _cytokine_substep(
            h,
            cyt,
            sigma,
            t_engaged,
            car_t_cells,
            volume_l,
            present,
            mono_factor,
            damp,
            p_ifn,
            k_il6,
            k_ifn,
            k_il18,
            il6_base,
            il18_base,
            il6_max,
            k_act,
            k_mac,
            k_dec,
            il18_fold,
            armor_fg,
            il18_half_sat,
            il18_boost_max,
            k_exchange,
            byst_fg,
            byst_half_sat,
            mac_damp,
        )


@njit(cache=True)
def _cytokine_substep(
    dt,
    cyt,
    sigma,
    t_engaged,
    car_t_cells,
    volume_l,
    present,
    mono_factor,
    damp,
    p_ifn,
    k_il6,
    k_ifn,
    k_il18,
    il6_base,
    il18_base,
    il6_max,
    k_act,
    k_mac,
    k_dec,
    il18_fold,
    armor_fg,
    il18_half_sat,
    il18_boost_max,
    k_exchange,
    byst_fg,
    byst_half_sat,
    mac_damp,
):
    for c in range(N_COMP):
        if not present[c]:
            continue
        v_ml = volume_l[c] * 1e3
        il18_gain = il18_boost(cyt[c, IL18], il18_base, il18_half_sat, il18_boost_max) if il18_boost_max > 0.0 else 1.0
        ifn_prod = p_ifn * sigma[c] * t_engaged[c] * il18_gain * damp / v_ml
        if byst_fg > 0.0:
            ifn_prod += bystander_ifng(byst_fg, car_t_cells[c], cyt[c, IL18] - il18_base, byst_half_sat) * damp / v_ml
        cyt[c, IFNG] = relax(cyt[c, IFNG], ifn_prod / k_ifn, k_ifn, dt)
        drive = k_act * hill(cyt[c, IFNG], k_mac, 3.0) * il18_gain * mac_damp
        cyt[c, MAC] = relax(cyt[c, MAC], drive / (drive + k_dec), drive + k_dec, dt)
        il6_target = il6_base + il6_max * cyt[c, MAC] * mono_factor
        cyt[c, IL6] = relax(cyt[c, IL6], il6_target, k_il6, dt)
        il18_target = il18_base * (1.0 + (il18_fold - 1.0) * cyt[c, MAC]) + armor_fg * 1e-3 * car_t_cells[c] / v_ml / k_il18
        cyt[c, IL18] = relax(cyt[c, IL18], il18_target, k_il18, dt)
    # exchange toward the volume-weighted mean of present compartments
    vol = 0.0
    for c in range(N_COMP):
        if present[c]:
            vol += volume_l[c]
    mix = 1.0 - math.exp(-k_exchange * dt)
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
def bystander_ifng(byst_fg, car_t_cells, il18_excess, half_sat):
    """IFN-gamma (pg/h) of CAR T cells activated by IL-18 alone: Hill 4 in IL-18 above baseline."""
    return byst_fg * 1e-3 * car_t_cells * hill(il18_excess, half_sat, 4.0)


@njit(cache=True)
def il18_boost(il18, il18_base, il18_half_sat, il18_boost_max):
    """Boost ``1 + b * excess / (excess + K)`` from IL-18 above baseline (``b = 0``: no response)."""
    e = max(0.0, il18 - il18_base)
    return 1.0 + il18_boost_max * e / (e + il18_half_sat)


@njit(cache=True)
def nb_il18_boost(cyt, il18_base, il18_half_sat, il18_boost_max, out):
    """Fill ``out[c]`` with the IL-18 proliferation boost of each compartment."""
    for c in range(out.shape[0]):
        out[c] = il18_boost(cyt[c, IL18], il18_base, il18_half_sat, il18_boost_max)
