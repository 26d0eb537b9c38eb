"""Uncertainty reports of fitted models, networks and dynamics studies.

``bayestensor.report`` is both this package and a function: the module object is callable, so
``bayestensor.report(run_dir)`` calls :func:`bayestensor.report.api.report` while
``from bayestensor.report import image_completion_figures`` keeps working. Sub-modules:
:mod:`~bayestensor.report.rundir` (the run-directory convention), :mod:`~bayestensor.report.sections`,
:mod:`~bayestensor.report.html`, :mod:`~bayestensor.report.api` and :mod:`~bayestensor.viz.images`.
"""

import sys
import types

from bayestensor.viz.images import image_completion_figures, is_image
from bayestensor.report.rundir import (prepare_run_dir, read_run, write_heldout, write_image,
                                       write_run)
from bayestensor.report.api import report, save_posterior_run


class _CallableModule(types.ModuleType):
    """A module that can be called like its :func:`report` function."""

    def __call__(self, *args, **kwargs):
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["report", "image_completion_figures", "is_image", "read_run", "write_run",
           "write_heldout", "write_image", "prepare_run_dir", "save_posterior_run"]
