"""Every script in ``examples/`` runs to the end in its fast mode, so the examples cannot rot.

Each script runs in a fresh Python process with ``BAYESTENSOR_EXAMPLES_FAST=1``, one torch
thread (two processes with two threads each on two cores slowed a step ~70x) and a temporary
working directory, writing into a folder given on its command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
SLOW = {"ray_sweep.py"}  # starting a local Ray takes most of a minute on two cores
TIMEOUT_S = 600


def run_example(script: Path, workdir: Path, extra_path: Path | None = None):
    env = dict(os.environ, BAYESTENSOR_EXAMPLES_FAST="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path),
                                                          env.get("PYTHONPATH")]))
    out = workdir / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, str(script), str(out)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc, out


def test_there_are_examples_and_each_is_documented():
    assert len(SCRIPTS) >= 6, [s.name for s in SCRIPTS]
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert "BAYESTENSOR_EXAMPLES_FAST" in readme
    assert [s.name for s in SCRIPTS if s.name not in readme] == []


@pytest.mark.parametrize("script", [
    pytest.param(s, id=s.stem, marks=[pytest.mark.slow] if s.name in SLOW else [])
    for s in SCRIPTS])
def test_example_runs(script, tmp_path):
    proc, out = run_example(script, tmp_path)
    assert proc.stdout.strip(), f"{script.name} printed nothing"
    assert any(out.rglob("*")), f"{script.name} wrote nothing into its output folder"


def test_ray_example_falls_back_without_ray(tmp_path):
    # A module named ``ray`` that fails to import stands in for a machine without Ray.
    fake = tmp_path / "no_ray"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('no Ray here')\n")
    work = tmp_path / "work"
    work.mkdir()
    proc, out = run_example(EXAMPLES / "ray_sweep.py", work, extra_path=fake)
    assert "Ray is not installed" in proc.stdout
    assert "local" in proc.stdout
    assert (out / "sweep.jsonl").is_file()
