"""Every ```python block of the README and docs/*.md runs (``docs/check_examples.py``: each
page in its own process and temporary folder). About 3 minutes in all, so marked slow:
``make test`` and CI run it, ``pytest`` alone does not."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import check_examples  # noqa: E402

PAGES = [p for p in check_examples.pages() if check_examples.blocks(p)]


def test_the_docs_have_examples():
    assert len(PAGES) >= 12


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page):
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "check_examples.py"), str(page)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
