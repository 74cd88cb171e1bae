"""Visual predictive check: observed data over the simulated cohort's percentile bands.

The observed file is either a NONMEM-style table (columns ``ID``, ``TIME`` in hours after
the first infusion, ``DV``, ``DVID``, optionally ``EVID`` and ``MDV``; what ``cart-sim
export --format nonmem`` writes) or a plain CSV with a ``day`` column, an optional ``id``
column and one column per series named as in ``trajectories.parquet``
(``car_t_blood_per_ul``, ``blasts_total``, ``anc_1e9_per_l``, ``il6_pg_per_ml``).

Bands are the simulated patients' percentiles per day (patients who died drop out of the
days after their death); observed points are compared with the band at their own time,
interpolated in log10 between days.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim.errors import UserError
from sim.export import NONMEM_SERIES
from sim.workflows.cohort import TRAJECTORIES

#: Series name -> (axis label, floor for the log scale).
SERIES_AXES = {
    "car_t_blood_per_ul": ("CAR T in blood (cells/uL)", 1e-3),
    "blasts_total": ("leukemic blasts (cells)", 1.0),
    "anc_1e9_per_l": ("ANC (1e9/L)", 1e-3),
    "il6_pg_per_ml": ("IL-6 in blood (pg/mL)", 0.1),
}
NONMEM_REQUIRED = ("ID", "TIME", "DV", "DVID")


def read_observed(path: Path) -> pd.DataFrame:
    """Observed data as a long table: ``id``, ``day``, ``series``, ``value`` (NONMEM or plain CSV)."""
    try:
        raw = pd.read_csv(path, sep=None, engine="python", comment="#")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(str(path), "", type(e).__name__, f"a readable CSV file ({str(e).splitlines()[0][:80]})") from None
    if "DV" in raw.columns or "TIME" in raw.columns:
        long = _from_nonmem(raw, path)
    else:
        long = _from_plain(raw, path)
    if long.empty:
        raise UserError(str(path), "", f"{len(raw)} rows", "at least one observation (EVID 0, MDV 0, a value)")
    return long


def _numeric(raw: pd.DataFrame, col: str, path: Path) -> pd.Series:
    values = pd.to_numeric(raw[col], errors="coerce")
    bad = raw[col][values.isna() & raw[col].notna()]
    if len(bad):
        raise UserError(str(path), f"{col}[row {bad.index[0] + 1}]", bad.iloc[0], "a number")
    return values


def _from_nonmem(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [c for c in NONMEM_REQUIRED if c not in raw.columns]
    if missing:
        raise UserError(str(path), missing[0], None, f"a NONMEM-style table with columns {', '.join(NONMEM_REQUIRED)}")
    keep = np.ones(len(raw), bool)
    for flag in ("EVID", "MDV"):
        if flag in raw.columns:
            keep &= _numeric(raw, flag, path).fillna(0).to_numpy() == 0
    by_dvid = {dvid: name for name, (dvid, _) in NONMEM_SERIES.items()}
    dvid = _numeric(raw, "DVID", path)
    unknown = sorted(set(dvid[keep].dropna().astype(int)) - set(by_dvid))
    if unknown:
        raise UserError(str(path), "DVID", unknown[0], f"one of {sorted(by_dvid)} ({_legend()})")
    table = pd.DataFrame(
        {
            "id": raw["ID"].astype(str),
            "day": _numeric(raw, "TIME", path) / 24.0,
            "series": dvid.map(lambda d: by_dvid.get(int(d)) if pd.notna(d) else None),
            "value": _numeric(raw, "DV", path),
        }
    )[keep]
    return table.dropna().reset_index(drop=True)


def _legend() -> str:
    return "; ".join(f"{d} {name}" for name, (d, _) in NONMEM_SERIES.items())


def _from_plain(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    if "day" not in raw.columns:
        raise UserError(str(path), "day", None, "a 'day' column (days after infusion), or a NONMEM table (ID, TIME, DV, DVID)")
    series = [c for c in raw.columns if c not in ("day", "id")]
    for col in series:
        if col not in TRAJECTORIES:
            from sim.errors import did_you_mean

            raise UserError(
                str(path), col, col, f"a series column, one of {', '.join(TRAJECTORIES)}" + did_you_mean(col, TRAJECTORIES)
            )
    if not series:
        raise UserError(str(path), "", list(raw.columns), f"at least one series column ({', '.join(TRAJECTORIES)})")
    ids = raw["id"].astype(str) if "id" in raw.columns else pd.Series("1", index=raw.index)
    day = _numeric(raw, "day", path)
    parts = [pd.DataFrame({"id": ids, "day": day, "series": col, "value": _numeric(raw, col, path)}) for col in series]
    return pd.concat(parts, ignore_index=True).dropna().reset_index(drop=True)


def bands(trajectories: np.ndarray, interval: float) -> pd.DataFrame:
    """Per series and day: the simulated median and the central ``interval`` band (patients x series x days in)."""
    lo_q, hi_q = 50 - interval / 2, 50 + interval / 2
    days = np.arange(trajectories.shape[2])
    rows = []
    for k, name in enumerate(TRAJECTORIES):
        with np.errstate(all="ignore"):
            lo, med, hi = np.nanpercentile(trajectories[:, k, :], [lo_q, 50, hi_q], axis=0)
        rows.append(pd.DataFrame({"series": name, "day": days, "lower": lo, "median": med, "upper": hi}))
    return pd.concat(rows, ignore_index=True)


def band_at(band: pd.DataFrame, series: str, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The band's lower and upper limits at the given (fractional) days, interpolated in log10 between days."""
    b = band[band.series == series].dropna()
    floor = SERIES_AXES[series][1]
    out = []
    for col in ("lower", "upper"):
        y = np.log10(np.clip(b[col].to_numpy(), floor, None))
        out.append(10 ** np.interp(day, b.day.to_numpy(), y, left=np.nan, right=np.nan))
    return out[0], out[1]


def coverage(band: pd.DataFrame, observed: pd.DataFrame) -> dict:
    """Per observed series: points within the simulated days, and how many fall inside the band."""
    out = {}
    for series, obs in observed.groupby("series"):
        lo, hi = band_at(band, series, obs.day.to_numpy())
        floor = SERIES_AXES[series][1]
        value = np.clip(obs.value.to_numpy(), floor, None)  # a zero count is at the plot's floor
        seen = ~np.isnan(lo)
        inside = seen & (value >= np.clip(lo, floor, None)) & (value <= np.clip(hi, floor, None))
        n = int(seen.sum())
        out[series] = {"points": n, "inside": int(inside.sum()), "share_inside": float(inside.sum() / n) if n else None}
    return out


def figure(band: pd.DataFrame, observed: pd.DataFrame, interval: float, title: str):
    """One panel per observed series: simulated band and median, observed points and each subject's line."""
    from sim.plots import subplots

    names = [s for s in TRAJECTORIES if s in set(observed.series)]
    fig, axes = subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        label, floor = SERIES_AXES[name]
        b = band[band.series == name]
        ax.fill_between(
            b.day, np.clip(b.lower, floor, None), np.clip(b.upper, floor, None), alpha=0.3, label=f"simulated {interval:g}%"
        )
        ax.semilogy(b.day, np.clip(b["median"], floor, None), color="tab:blue", label="simulated median")
        for _, subject in observed[observed.series == name].groupby("id"):
            s = subject.sort_values("day")
            ax.semilogy(s.day, np.clip(s.value, floor, None), "o-", color="black", ms=3, lw=0.6, alpha=0.7)
        ax.plot([], [], "o-", color="black", ms=3, lw=0.6, label="observed")
        ax.set(title=label, xlabel="days after infusion")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
