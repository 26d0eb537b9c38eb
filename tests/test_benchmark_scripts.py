"""Every benchmark script imports against the current library and parses its options.

The scripts are long studies, run by hand (``docs/benchmarks.md`` names each command); the
suite does not run them, but a script that no longer imports, or whose options no longer
parse, is caught here: each is imported as ``python benchmarks/<name>.py`` would import it, and
its ``--help`` must exit cleanly.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "__init__")
#: Scripts without command-line options: their ``main`` runs the study itself.
NO_OPTIONS = {"pyro_svgd_tests", "tables"}


def test_every_script_is_listed():
    assert len(SCRIPTS) >= 20 and "completion_study" in SCRIPTS


@pytest.fixture
def script_imports(monkeypatch):
    """Import path of a script run from benchmarks/ (the folder itself and the repository
    root); the modules it imports by bare name (``tables``, ``completion_study``) are dropped
    afterwards so that they cannot shadow installed packages in later tests."""
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", None) and \
                Path(sys.modules[name].__file__).resolve().parent == BENCHMARKS:
            del sys.modules[name]


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_imports_and_parses_help(name, script_imports, monkeypatch, capsys):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent == BENCHMARKS, module.__file__
    assert callable(getattr(module, "main", None)), f"{name}.py has no main()"
    if name in NO_OPTIONS:
        return
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as done:
        module.main()
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out
