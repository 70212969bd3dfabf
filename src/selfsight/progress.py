"""Stage lines for long work that has no natural progress bar: what runs, on how much, and how
long it took. Bars (tqdm) show rate and ETA where work comes in batches; ``enabled=False``
(``--no-progress``) silences both."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stage(what: str, enabled: bool = True) -> Iterator[None]:
    """Print ``what ...`` before the block and its wall time after it, to stderr."""
    if not enabled:
        yield
        return
    print(f"{what} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    yield
    print(f"{what}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
