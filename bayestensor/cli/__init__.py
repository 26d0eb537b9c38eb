"""The ``bayestensor`` command: one thin sub-command per task, shared options."""

from bayestensor.cli.main import main

__all__ = ["main"]
