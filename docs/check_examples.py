"""Run every ```python block of README.md and docs/*.md; exit non-zero if any fails.

The blocks of one page run in order in one namespace (later blocks may use names defined by
earlier ones), in a fresh Python process and a temporary working directory, so files the
examples write do not land in the repository and pages cannot affect each other.

Usage::

    python docs/check_examples.py              # all pages
    python docs/check_examples.py docs/priors.md README.md
    python docs/check_examples.py -v           # also show the examples' output

Set ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in the environment to bound the threads used.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def pages() -> list[Path]:
    """README.md and every docs/*.md, in a fixed order."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def blocks(path: Path) -> list[tuple[int, str]]:
    """``(first line number, source)`` of each ```python block of a page."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def run_page(path: Path) -> int:
    """Execute the blocks of one page in one namespace (the child-process side)."""
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {"__name__": "__main__"}
    for line, source in blocks(path):
        label = f"{path.name}:{line}"
        try:
            exec(compile(source, label, "exec"), namespace)
        except BaseException:  # noqa: BLE001 - report anything, including KeyboardInterrupt
            print(f"FAILED: block at {label}", file=sys.stderr)
            traceback.print_exc()
            return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", type=Path, help="pages to check (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the examples' output")
    parser.add_argument("--single", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single is not None:
        return run_page(args.single)

    chosen = [p.resolve() for p in args.pages] or pages()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    failed, total_start = [], time.perf_counter()
    for page in chosen:
        n = len(blocks(page))
        if n == 0:
            print(f"{page.relative_to(ROOT)}: no python blocks")
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bt-docs-") as tmp:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--single",
                                   str(page)], cwd=tmp, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        status = "ok" if proc.returncode == 0 else "FAILED"
        print(f"{page.relative_to(ROOT)}: {n} blocks, {status} ({seconds:.1f} s)")
        if proc.returncode != 0 or args.verbose:
            sys.stdout.write(proc.stdout)
            sys.stdout.write(proc.stderr)
        if proc.returncode != 0:
            failed.append(page.relative_to(ROOT))
    print(f"total {time.perf_counter() - total_start:.1f} s; "
          + ("all pages ran" if not failed else f"failed: {', '.join(map(str, failed))}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
