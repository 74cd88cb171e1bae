"""The numba core: one kernel per step phase, on struct-of-arrays agent frames.

numba's on-disk cache checks only the source file of the function it compiled, not the
files of the functions inlined into it, so an edited ``random.py`` would leave a stale
``step.nb_run``. On import, the cache files of this package are dropped when any source
file of the package changed since they were written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _drop_stale_caches() -> None:
    here = Path(__file__).parent
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(here.glob("*.py")))).hexdigest()
    cache = here / "__pycache__"
    stamp = cache / "numba-sources.sha256"
    try:
        if stamp.exists() and stamp.read_text() == digest:
            return
        for f in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only install: numba then caches elsewhere, by its own rules
        pass


_drop_stale_caches()
