"""Temporary signal handlers, shared by the CLI's interrupt handling and the parallel-training helper.

Why one function: installing handlers has three rules that are easy to get wrong in each copy: Python delivers
signals only to the main thread (elsewhere, nothing is installed); a signal the caller ignores (``nohup``, a
background job's Ctrl-C) must stay ignored; and the previous handlers come back afterwards, whatever happens.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any


@contextlib.contextmanager
def signal_handlers(signals: Sequence[int], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Run the block with ``handler`` for each of ``signals`` not ignored, then restore the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
