"""Figures of one patient."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from sim.readouts import RESPONSES


def subplots(*args, **kwargs):
    """``(figure, axes)`` like ``pyplot.subplots``, without pyplot (no GUI backend, no global figure list)."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(*args, **kwargs)


def patient_figure(ts, summary: dict, blood_l: float):
    """CAR T, blasts, ANC and IL-6 over days (log axes where counts span decades).

    ``ts``: the long time series, a DataFrame or a dict of columns (rows by time, then compartment).
    """
    compartment = np.asarray(ts["compartment"])
    per_time = len(compartment) // max(1, len(np.unique(np.asarray(ts["t_days"]))))

    def col(name, where=None):
        v = np.asarray(ts[name], dtype=float)
        return v[compartment == where] if where else v.reshape(-1, per_time).sum(axis=1)  # summed over compartments

    pb = {name: col(name, "pb") for name in ("t_days", "car_t_memory", "car_t_effector", "car_t_exhausted",
                                              "anc_1e9_per_l", "il6_pg_per_ml", "ifng_pg_per_ml")}  # fmt: skip
    t = pb["t_days"]
    fig, axes = subplots(2, 2, figsize=(10, 7), sharex=True)
    ax = axes[0, 0]
    car_pb = (pb["car_t_memory"] + pb["car_t_effector"] + pb["car_t_exhausted"]) / (blood_l * 1e6)
    ax.semilogy(t, car_pb.clip(1e-4), label="blood (cells/uL)")
    ax.set_title("CAR T cells in blood")
    ax.set_ylabel("cells per uL")
    ax = axes[0, 1]
    ax.semilogy(t, col("blasts").clip(1), label="all blasts")
    ax.semilogy(t, col("blasts_target_negative").clip(1), label="CAR-target-negative", ls="--")
    ax.set_title(f"Leukemic blasts (BM blasts day 28: {summary['bm_blast_percent_day28']:.2g}%)")
    ax.set_ylabel("cells")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    ax.semilogy(t, pb["anc_1e9_per_l"].clip(1e-3))
    for y, ls in ((0.5, "--"), (0.1, ":")):
        ax.axhline(y, color="grey", ls=ls, lw=0.8)
    ax.set_title(f"ANC (nadir {summary['anc_nadir_1e9_per_l']:.2g}e9/L)")
    ax.set_ylabel("1e9/L")
    ax = axes[1, 1]
    ax.semilogy(t, pb["il6_pg_per_ml"].clip(0.1), label="IL-6 blood")
    ax.semilogy(t, pb["ifng_pg_per_ml"].clip(0.1), label="IFN-gamma blood", alpha=0.7)
    ax.semilogy(t, col("il6_pg_per_ml", "bm").clip(0.1), label="IL-6 marrow", ls="--", alpha=0.7)
    ax.set_title(f"Cytokines (CRS grade {summary['crs_grade']}, ICANS {summary['icans_grade']})")
    ax.set_ylabel("pg/mL")
    ax.legend(fontsize=8)
    for a in axes[1]:
        a.set_xlabel("days after infusion")
    for a in axes.flat:
        a.axvline(0, color="k", lw=0.5)
    fig.suptitle(f"{summary['scenario']} - patient {summary['patient_index']} - response day 28: {summary['response_day28']}")
    for a in axes.flat:  # plain 1e+03 labels: mathtext 10^3 labels cost a third of the drawing
        a.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=True))
        a.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=True))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.9, wspace=0.22, hspace=0.25)  # fixed: no layout pass
    return fig


def cohort_figure(result, title: str):
    """Median and 10-90% bands of CAR T, blasts, ANC and IL-6, and the CRS grade distribution."""
    import numpy as np

    traj = result.trajectories
    days = np.arange(traj.shape[2])
    fig, axes = subplots(2, 3, figsize=(14, 7))
    panels = (
        (0, "CAR T in blood (cells/uL)", 1e-3),
        (1, "Leukemic blasts (cells)", 1.0),
        (2, "ANC (1e9/L)", 1e-3),
        (3, "IL-6 in blood (pg/mL)", 0.1),
    )
    for ax, (k, label, floor) in zip(axes.flat, panels, strict=False):
        y = np.clip(traj[:, k, :], floor, None)
        with np.errstate(all="ignore"):
            lo, med, hi = np.nanpercentile(y, [10, 50, 90], axis=0)
        ax.fill_between(days, lo, hi, alpha=0.3, label="10-90%")
        ax.semilogy(days, med, label="median")
        ax.set_title(label)
        ax.set_xlabel("days after infusion")
        if k == 2:
            for lim, ls in ((0.5, "--"), (0.1, ":")):
                ax.axhline(lim, color="grey", ls=ls, lw=0.8)
    axes[0, 0].legend(fontsize=8)
    ax = axes.flat[4]
    grades = result.patients.crs_grade.value_counts().reindex(range(6), fill_value=0)
    ax.bar(grades.index, grades.to_numpy() / len(result.patients))
    ax.set_title("CRS grade (ASTCT)")
    ax.set_xlabel("grade")
    ax.set_ylabel("fraction of patients")
    ax = axes.flat[5]
    resp = result.patients.response_day28.value_counts().reindex(list(RESPONSES), fill_value=0)
    ax.bar(resp.index, resp.to_numpy() / len(result.patients))
    ax.set_title("Response at day 28 (ELN 2022)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep_heatmap(table, x: str, y: str, metric: str, window: dict, title: str):
    """A metric over a 2-D grid, each cell annotated, the therapeutic window outlined.

    Args:
        table: ``points.parquet`` of a grid sweep.
        x: Path varied along the x axis.
        y: Path varied along the y axis.
        metric: Column to colour by.
        window: Metric -> :class:`sim.workflows.sweep.Bound`; cells where all hold get a thick outline.
        title: Figure title.
    """
    import numpy as np
    from matplotlib.patches import Rectangle

    xs, ys = list(dict.fromkeys(table[x])), list(dict.fromkeys(table[y]))
    grid = np.full((len(ys), len(xs)), np.nan)
    inside = np.zeros_like(grid, dtype=bool)
    for _, row in table.iterrows():
        i, j = ys.index(row[y]), xs.index(row[x])
        grid[i, j] = row[metric]
        inside[i, j] = bool(row.get("in_window", False))
    fig, ax = subplots(figsize=(1.3 * len(xs) + 3, 0.8 * len(ys) + 2.5))
    im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label=metric)
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2g}", ha="center", va="center", color="w", fontsize=8)
            if inside[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    ax.set_xticks(range(len(xs)), [f"{v:.3g}" if isinstance(v, float) else str(v) for v in xs], rotation=30)
    ax.set_yticks(range(len(ys)), [f"{v:.3g}" if isinstance(v, float) else str(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    rule = " and ".join(b.describe(m) for m, b in window.items())
    ax.set_title(f"{title}\nred outline: therapeutic window ({rule})" if rule else title, fontsize=9)
    fig.tight_layout()
    return fig


def sobol_figure(indices, title: str):
    """First-order and total Sobol indices with 95% intervals, one panel per metric."""
    import numpy as np

    metrics = list(dict.fromkeys(indices.metric))
    fig, axes = subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        d = indices[indices.metric == m]
        k = np.arange(len(d))
        for off, col, label in ((-0.2, "S1", "first order"), (0.2, "ST", "total")):
            v = d[col].to_numpy()
            err = np.vstack([v - d[f"{col}_lo"].to_numpy(), d[f"{col}_hi"].to_numpy() - v])
            ax.bar(k + off, v, width=0.4, yerr=err, capsize=3, label=label)
        ax.set_xticks(k, [p.removeprefix("params.") for p in d.parameter], rotation=45, ha="right")
        ax.set_title(m)
        ax.axhline(0, color="k", lw=0.5)
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].set_ylabel("Sobol index (95% CI)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def km_figure(patients, title: str):
    """Kaplan-Meier curves of overall and leukemia-free survival with 95% bands (lifelines)."""
    from sim.workflows.survival import ENDPOINTS, kaplan_meier

    fig, ax = subplots(1, 1, figsize=(6.0, 4.0))
    for endpoint in ENDPOINTS:
        kaplan_meier(patients, endpoint).plot_survival_function(ax=ax, ci_show=True)
    ax.set_xlabel("days from infusion")
    ax.set_ylabel("probability")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title, fontsize=10)
    return fig


#: Events a swimmer lane marks, with their readout column and marker.
SWIMMER_EVENTS = (
    ("remission", "remission_day", "o", "tab:green"),
    ("relapse", "relapse_day", "v", "tab:red"),
    ("allo-HSCT", "hsct_day", "s", "tab:purple"),
    ("CAR T eliminated", "car_t_eliminated_day", "D", "tab:orange"),
)


def swimmer_figure(patients, title: str, max_patients: int = 60):
    """One lane per patient (the first ``max_patients``), from infusion to death (x) or censoring (>), with events."""
    import numpy as np

    p = patients.head(max_patients).sort_values("os_day").reset_index(drop=True)
    fig, ax = subplots(1, 1, figsize=(8.0, 0.12 * len(p) + 1.5))
    lanes = np.arange(len(p))
    ax.barh(lanes, p.os_day, color="lightgrey", height=0.7)
    died = p.death.astype(bool).to_numpy()
    ax.plot(p.os_day[died], lanes[died], "kx", ms=4, label="death")
    ax.plot(p.os_day[~died], lanes[~died], "k>", ms=3, label="censored")
    for label, column, marker, color in SWIMMER_EVENTS:
        if column in p and p[column].notna().any():
            ax.plot(p[column], lanes, marker, color=color, ms=4, ls="none", label=label)
    ax.set_yticks([])
    ax.set_xlabel("days from infusion")
    ax.set_ylabel("patients (by survival)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    return fig


def spaghetti_figure(result, title: str, max_patients: int = 40):
    """Each patient's daily CAR T, blasts, ANC and IL-6 (thin lines, the first ``max_patients``) over the median."""
    import numpy as np

    from sim.workflows.cohort import TRAJECTORIES

    traj = result.trajectories
    days = np.arange(traj.shape[2])
    fig, axes = subplots(1, 4, figsize=(16, 3.8))
    floors = (1e-3, 1.0, 1e-3, 0.1)
    for k, (ax, name, floor) in enumerate(zip(axes, TRAJECTORIES, floors, strict=True)):
        y = np.clip(traj[:, k, :], floor, None)
        for row in y[:max_patients]:
            ax.semilogy(days, row, color="tab:blue", lw=0.5, alpha=0.35)
        with np.errstate(all="ignore"):
            ax.semilogy(days, np.nanmedian(y, axis=0), color="black", lw=1.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("days after infusion")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
