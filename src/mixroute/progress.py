"""Progress bars for long CLI jobs: shown on a terminal, silent when piped."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def progress_iter(items: Sequence[T], label: str) -> Iterator[T]:
    """Iterate ``items``, drawing a bar on stderr only when it is a terminal."""
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            yield item
            bar.advance(task)


def progress_batches(
    fn: Callable[[list[T]], Any], items: Sequence[T], label: str, size: int = 256
) -> list[Any]:
    """``fn`` over ``items`` in slices of ``size``, one bar step per slice;
    returns the per-slice results in order (the caller joins them)."""
    slices = [list(items[i : i + size]) for i in range(0, len(items), size)]
    return [fn(part) for part in progress_iter(slices, label)]
