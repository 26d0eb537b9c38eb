"""Fixtures shared by the test modules."""

import contextlib
import os
import signal

import pytest


@pytest.fixture
def interrupted_at():
    """``interrupted_at(sampler_cls, at_step, how="keyboard")``: a context in which the
    sampler's ``step`` raises ``KeyboardInterrupt`` at step ``at_step`` (after sending this
    process SIGTERM with ``how="sigterm"``), as a user's Ctrl-C or a scheduler would."""

    @contextlib.contextmanager
    def patch(sampler_cls, at_step: int, how: str = "keyboard"):
        original = sampler_cls.step

        def step(self, state, t, **kwargs):
            if t == at_step:
                if how == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                raise KeyboardInterrupt
            return original(self, state, t, **kwargs)

        with pytest.MonkeyPatch.context() as m:
            m.setattr(sampler_cls, "step", step)
            yield

    return patch
