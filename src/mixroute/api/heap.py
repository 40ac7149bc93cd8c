"""The garbage collector's settings for a serving process.

Each request allocates a few hundred container objects (scope, messages,
futures, aiohttp's request and response) that live for about a millisecond.
With CPython's default first-generation threshold of 700, at 64 requests in
flight a young collection ran every few requests and promoted whatever was in
flight to older generations, whose collections then walked the whole heap,
the classifier's tables included: about 80 µs of CPU per request, a sixth of a
routed request's cost (``bench/``). Reference counting frees almost all of
those objects anyway; the collector is there for cycles.

``settle`` collects once, freezes what survives (start-up state: config,
classifier, pools, which live as long as the process) so later full
collections skip it, and raises the first threshold. Cyclic garbage then
waits for tens of thousands of allocations instead of hundreds: a few
megabytes at most.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("mixroute")

#: Later generations: collected every this many collections of the one before.
OLDER_THRESHOLD = 20

_PYTHON_THRESHOLDS = gc.get_threshold()
_settled = False


def settle(young_threshold: int) -> None:
    """Collect, freeze the survivors, set the thresholds; ``young_threshold``
    0 leaves the collector as Python set it, or gives it back after a reload."""
    global _settled
    if young_threshold <= 0:
        if _settled:
            # What an earlier settle froze (the replaced gateway among it)
            # would otherwise never be collected.
            gc.unfreeze()
            gc.set_threshold(*_PYTHON_THRESHOLDS)
            _settled = False
            log.info("garbage collector: Python's settings restored")
        return
    _settled = True
    started = time.perf_counter()
    # A replaced gateway frozen earlier may be garbage now: let it go first.
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, OLDER_THRESHOLD, OLDER_THRESHOLD)
    log.info(
        "garbage collector: %d start-up objects frozen, young collections every "
        "%d allocations (settled in %.0f ms)",
        gc.get_freeze_count(),
        young_threshold,
        (time.perf_counter() - started) * 1000,
    )
