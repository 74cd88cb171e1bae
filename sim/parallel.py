"""Where work runs: in this process, on a local process pool, or on a Dask cluster.

Every caller hands over independent tasks whose results do not depend on where they ran
(each task seeds its own streams), and receives each result as it finishes, so it can
be kept at once (checkpoints) whatever the order of completion.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from sim.errors import UserError


def run_tasks(
    fn: Callable[..., Any],
    tasks: dict[Hashable, tuple],
    workers: int = 1,
    scheduler: str | None = None,
    on_result: Callable[[Hashable, Any], None] = lambda key, result: None,
) -> None:
    """Run ``fn(*args)`` for every ``key: args`` of ``tasks``; call ``on_result`` as each finishes.

    Args:
        fn: A module-level function (pickled to Dask workers); it must be thread-safe (local
            workers are threads: no global random state, no shared mutable state).
        tasks: Task key -> positional arguments.
        workers: Local worker threads (1 runs in this thread); ignored with ``scheduler``.
        scheduler: Address of a Dask distributed scheduler (``tcp://host:8786``).
        on_result: Called in this process with the key and the result of each task.
    """
    if not tasks:
        return
    if scheduler:
        _run_dask(fn, tasks, scheduler, on_result)
    elif workers <= 1:
        for key, args in tasks.items():
            on_result(key, fn(*args))
    else:
        # threads: the compiled time loop releases the GIL, and threads start at once
        # (a spawned process pays ~1 s of imports and cache loads before its first patient)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(fn, *args): key for key, args in tasks.items()}
            for fut in as_completed(futures):
                on_result(futures[fut], fut.result())


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A local process pool that spawns its workers (numba and threads do not survive fork safely)."""
    import multiprocessing as mp

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))


def connect(scheduler: str):
    """A ``dask.distributed.Client`` for ``scheduler``; an unreachable address is a :class:`UserError`."""
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler", "", scheduler, 'Dask installed: pip install "cart-sim[cluster]"') from None

    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        expected = f"the address of a running Dask scheduler, e.g. tcp://host:8786 ({e})"
        raise UserError("--scheduler", "", scheduler, expected) from None


def ordered_map(workers: int = 1, scheduler: str | None = None) -> tuple[Callable, Callable[[], None]]:
    """An order-keeping ``map`` (built-in, local spawn pool or Dask client) and the function that closes it."""
    if scheduler:
        client = connect(scheduler)
        return lambda f, xs: client.gather(client.map(f, xs, pure=False)), client.close
    if workers > 1:
        pool = spawn_pool(workers)
        return pool.map, pool.shutdown
    return map, lambda: None


def _run_dask(fn, tasks: dict, scheduler: str, on_result) -> None:
    with connect(scheduler) as client:
        from distributed import as_completed as dask_completed

        futures = {client.submit(fn, *args, key=f"{fn.__name__}-{key}", pure=False): key for key, args in tasks.items()}
        for fut in dask_completed(futures):
            on_result(futures[fut], fut.result())
