"""Per-thread switches that a ``with`` block turns on: one mechanism for every "run the reference form here" flag.

FLOP counting must see the plain PyTorch form of a layer (the fused CPU stem, the grouped conv's dense form and
torchvision's deformable conv are invisible or miscounted by torch's counter), but switching that form for the
whole process would slow another thread's inference. A ``ContextVar`` is per thread and per asyncio task.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator


@contextlib.contextmanager
def switched_on(flag: contextvars.ContextVar[bool]) -> Iterator[None]:
    """``flag`` is True inside the block (this thread or task only) and back to its old value after it."""
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)
