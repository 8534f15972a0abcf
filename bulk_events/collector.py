"""CPython's cyclic garbage collector, set for a long batch run.

A run makes millions of short-lived containers (a tuple, a list, an outcome per row), and the
collector counts them: each time enough have outlived a young collection it scans the oldest
generation, which holds every object the program's imports made (pandas, pandera, aiohttp:
hundreds of thousands of them, alive until the process ends). In a 1,000,000-row dry run that
was 54 full collections and about 5 s of the main process's CPU, a quarter of its own work.

:func:`settle` moves everything that exists once a program has started into the permanent
generation (``gc.freeze``: never scanned, and never collected, which these objects would not be
anyway), and lets the youngest generation grow larger before a collection, so that collections
scan the run's own objects, less often. Cycles are still collected. It is for a program's entry
point (the CLI, the checker process), like :mod:`bulk_events.malloc`; the library never
changes the collector of a program that imports it.
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # allocations between young collections (CPython's default is 700)
_settled = False


def settle() -> None:
    """Freeze what exists now, and collect the young generation less often (see above); once
    per process (the CLI may be invoked many times in one, as tests do)."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young:  # 0: the collector is off, and stays so
        gc.set_threshold(max(young, YOUNG), middle, old)
