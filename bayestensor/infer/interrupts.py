"""SIGTERM handled as Ctrl-C, so that every long loop stops the same way on either.

A job scheduler or ``kill`` sends SIGTERM, which by default ends Python without running any
``except KeyboardInterrupt`` clause; inside :func:`sigterm_as_interrupt` it raises
``KeyboardInterrupt`` instead. The run driver (SGHMC, SVGD), the MAP and VI optimizers and the
NUTS chains then keep what they have computed, as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into ``KeyboardInterrupt`` within the block (main thread only; elsewhere
    signals cannot be handled and the block changes nothing)."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum, frame):
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
