"""Markdown tables of the JSON results in benchmarks/results/ (for docs/benchmarks.md).

Run: ``python benchmarks/tables.py [NAME ...]`` (default: every result file present).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def table(rows: list[dict], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)


def main(names):
    files = sorted(RESULTS.glob("*.json")) if not names else [RESULTS / f"{n}.json" for n in names]
    for path in files:
        data = json.loads(path.read_text())
        rows = data.get("summary") or data.get("rows") or data.get("runs")
        print(f"\n### {path.stem}\n")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            columns = list(dict.fromkeys(k for r in rows for k in r))
            print(table(rows, columns))
        else:
            print("```\n" + json.dumps({k: v for k, v in data.items() if k != "args"}, indent=1,
                                       default=str)[:2000] + "\n```")


if __name__ == "__main__":
    main(sys.argv[1:])
