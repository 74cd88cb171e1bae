# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # cart-sim from Python
#
# One virtual patient, a virtual trial arm, an inhibitory CAR against the standard CAR on
# the same patients, a visual predictive check and a NONMEM export, all from the Python
# API. Open it as a notebook with `jupytext --to ipynb docs/example.py` (or Jupyter's
# jupytext extension); `tests/test_docs.py` runs every cell.
#
# `N_PATIENTS` keeps the run to about a minute on two cores; raise it for real answers.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sim.export import nonmem_dataset
from sim.model import Simulation
from sim.scenario import load_scenario
from sim.workflows.cohort import run_cohort, trajectories_long
from sim.workflows.compare import run_comparison
from sim.workflows.survival import kaplan_meier
from sim.workflows.vpc import bands, coverage

N_PATIENTS = 40
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "scenarios" / "cll1_standard.yaml").is_file())
SCENARIOS = ROOT / "scenarios"

# %% [markdown]
# ## One virtual patient
#
# A scenario is one trial arm; `--set`-style overrides change any value by its dotted path.
# Patient 0 of the scenario's seed is the same patient in every run.

# %%
scenario = load_scenario(SCENARIOS / "cll1_standard.yaml", ["product.dose_cells_per_kg=1e6", "horizon_days=60"])
result = Simulation(scenario, patient_index=0).run()
summary = result.summary
print(
    f"response {summary['response_day28']}, CRS grade {summary['crs_grade']}, "
    f"ANC nadir {summary['anc_nadir_1e9_per_l']:.2g}e9/L, CAR T peak {summary['car_t_peak_cells_per_ul_blood']:.3g}/uL"
)

# %%
ts = result.timeseries
blood = ts[ts.compartment == "pb"]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogy(blood.t_days, blood.anc_1e9_per_l.clip(lower=1e-3), label="ANC (1e9/L)")
ax.semilogy(blood.t_days, blood.il6_pg_per_ml.clip(lower=0.1), label="IL-6 (pg/mL)")
ax.set(xlabel="days after infusion", title="patient 0")
ax.legend()

# %% [markdown]
# ## A virtual trial arm
#
# `run_cohort` gives one row per patient (every readout) and daily trajectories; the same
# patient index is the same patient for any number of workers.

# %%
arm = run_cohort(scenario, N_PATIENTS, workers=2)
rates = arm.summary["rates"]
for name in ("cr_cri_mlfs", "crs_grade_ge3", "neutropenia_grade4"):
    r = rates[name]
    print(f"{name}: {r['rate']:.0%} (95% CI {r['ci95'][0]:.0%}-{r['ci95'][1]:.0%})")
os_fit = kaplan_meier(arm.patients, "os")
os_fit.plot_survival_function()

# %% [markdown]
# ## A CD16 inhibitory CAR against the standard CAR, on the same patients
#
# Common random numbers: patient *i* has the same disease in both arms, so differences are
# paired (bootstrap intervals from `scipy.stats.bootstrap`).

# %%
icar = load_scenario(SCENARIOS / "cll1_cd16_icar.yaml", ["horizon_days=60"])
comparison = run_comparison([scenario, icar], N_PATIENTS, workers=2)
days = comparison.differences["cll1_cd16_icar"]["median_days_anc_below_0_5"]
low, high = days["ci95"]
print(f"difference of medians in days with ANC < 0.5: {days['difference']:+.1f} (95% CI {low:+.1f} to {high:+.1f})")
print(comparison.conclusion)

# %% [markdown]
# ## A visual predictive check
#
# Observed data are a long table (`id`, `day`, `series`, `value`), as `sim.workflows.vpc.read_observed`
# reads from a CSV or NONMEM file. Here a second cohort with another seed stands in for a
# trial's data, so about 90% of its points belong inside the 90% band. With 40 patients the
# band's edges are themselves uncertain and a patient's days move together, so one run can
# stray well below 90% (a test of 200 against 200 patients stays within 8 points of its band).

# %%
band = bands(arm.trajectories, 90)
other = run_cohort(scenario.model_copy(update={"seed": scenario.seed + 1}), N_PATIENTS, workers=2)
observed = (
    nonmem_dataset(other.patients, trajectories_long(other))
    .query("EVID == 0 and DVID == 1")
    .assign(id=lambda t: t.ID.astype(str), day=lambda t: t.TIME / 24, series="car_t_blood_per_ul", value=lambda t: t.DV)
)
share = coverage(band, observed)["car_t_blood_per_ul"]["share_inside"]
print(f"observed CAR T points inside the simulated 90% band: {share:.0%}")
car = band[band.series == "car_t_blood_per_ul"]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.fill_between(car.day, car.lower.clip(lower=1e-3), car.upper.clip(lower=1e-3), alpha=0.3, label="simulated 90%")
ax.semilogy(car.day, car["median"].clip(lower=1e-3), label="simulated median")
ax.semilogy(observed.day, observed.value.clip(lower=1e-3), "k.", ms=3, label="observed")
ax.set(xlabel="days after infusion", ylabel="CAR T cells/uL blood")
ax.legend()

# %% [markdown]
# ## Export for NONMEM, nlmixr2 or Monolix
#
# One dose record per patient (AMT in CAR+ cells/kg) and one observation record per patient,
# day and series (DVID 1 CAR T/uL, 2 ANC, 3 blasts, 4 IL-6); TIME in hours.

# %%
table = nonmem_dataset(other.patients, trajectories_long(other))
print(table.head(6).to_string(index=False))
assert np.isfinite(table.DV).all()
