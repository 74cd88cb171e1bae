"""Atomic output: every file is written to a temporary name and renamed into place."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from sim.errors import UserError


def _default_file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give: 0666 less the process umask (0644 usually)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    ``mkstemp`` creates the file 0600; it is given the usual mode before the rename, so
    others on a shared machine can read the results.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def source_commit() -> str | None:
    """The git commit of the cart-sim sources (``-dirty`` when edited), or None outside a checkout."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def provenance(params: str | None = None, scenarios: list | None = None) -> dict:
    """What made an output: versions and commit, the ``--params`` set, the scenarios (hash, seed), the command line."""
    import platform
    import sys
    from importlib.metadata import PackageNotFoundError, version

    from sim import __version__

    def v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    packages = ("numpy", "numba", "scipy", "pandas", "pyarrow", "pydantic", "mesa", "matplotlib")
    return {
        "cart_sim": __version__,
        "python": platform.python_version(),
        "packages": {name: v(name) for name in packages},
        "commit": source_commit(),
        "params_file": params,
        "scenarios": [
            {"name": sc.name, "seed": sc.seed, "hash": content_hash(sc.model_dump(mode="json"))} for sc in scenarios or []
        ],
        "command": " ".join(["cart-sim", *sys.argv[1:]]),
    }


def content_hash(data) -> str:
    """Identity of a piece of work (its JSON-able description and the cart-sim version), for resuming."""
    import hashlib

    from sim import __version__

    text = json.dumps({"work": data, "version": __version__}, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refuse_other_work(folder: Path, state_name: str, key: str, what: str) -> None:
    """Refuse to resume in ``folder`` when its state file ``state_name`` records other work than ``key``.

    Raises:
        UserError: Naming the folder, the state file, the recorded hash and ``what`` was expected.
    """
    state_file = Path(folder) / state_name
    if not state_file.exists():
        return
    old = json.loads(state_file.read_text()).get("hash")
    if old != key:
        raise UserError(str(folder), state_name, old, f"{what} (this run is {key}); use another --out or remove the folder")


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_parquet(path: str | Path, df) -> None:
    """Write a DataFrame, or a dict of equal-length columns (without importing pandas), to parquet, atomically."""
    with atomic_path(path) as tmp:
        if isinstance(df, dict):
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_arrays([_arrow(v) for v in df.values()], names=list(df)), tmp)
        else:
            df.to_parquet(tmp, index=False)


def _arrow(v):
    """A numpy column as an Arrow array, from its buffers: ``pa.array`` would import pandas (half a second)."""
    import numpy as np
    import pyarrow as pa

    v = np.ascontiguousarray(v)
    if v.dtype.kind == "U":
        data = [x.encode() for x in v.tolist()]
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in data])]).astype(np.int32)
        return pa.Array.from_buffers(pa.string(), len(v), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])
    if v.dtype.kind == "b":  # Arrow packs booleans in bits
        return pa.Array.from_buffers(pa.bool_(), len(v), [None, pa.py_buffer(np.packbits(v, bitorder="little"))])
    return pa.Array.from_buffers(pa.from_numpy_dtype(v.dtype), len(v), [None, pa.py_buffer(v)])


def save_figure(path: str | Path, fig, tight: bool = True) -> None:
    """Save a matplotlib figure as PNG, atomically (``tight``: crop to the drawn area, one more layout pass)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight" if tight else None)


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


@contextmanager
def staged_outputs(out: Path):
    """Yield a staging folder beside ``out``; on success move its files into ``out``.

    Files are renamed one by one on the same filesystem, so a crash leaves either the
    old file or the finished one, never a partial file; the staging folder is always
    removed.
    """
    import shutil

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        out.mkdir(parents=True, exist_ok=True)
        for f in staging.iterdir():
            f.replace(out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_output_dir(out: str | Path, option: str = "--out") -> Path:
    """Validate an output folder without creating it; errors are :class:`UserError`.

    The folder may exist (and must then be a writable directory) or not exist yet (its
    nearest existing parent must then be a writable directory).
    """
    p = Path(out)
    if p.exists():
        if not p.is_dir():
            raise UserError(option, "", str(p), "a directory for the outputs, but this is a file")
        if not os.access(p, os.W_OK | os.X_OK):
            raise UserError(option, "", str(p), "a writable directory")
        return p
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(option, "", str(p), f"a folder that can be created (parent {parent} is not a writable directory)")
    return p
