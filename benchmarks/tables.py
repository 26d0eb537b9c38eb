"""Markdown tables of the JSON results in benchmarks/results/ (for docs/benchmarks.md).

Run: ``python benchmarks/tables.py [NAME ...]`` (default: every result file present).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def write_result(args, rows: list[dict], summary) -> dict:
    """Write ``{"rows", "summary", "machine", "torch", "args"}`` to ``args.out`` (JSON) and
    return it: the common record of a benchmark's runs."""
    import torch

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "summary": summary, "machine": platform.platform(),
              "torch": torch.__version__, "args": {**vars(args), "out": str(args.out)}}
    args.out.write_text(json.dumps(result, indent=1))
    return result


PRIORS = ("gamma", "half_cauchy", "log_uniform")


def runs_parser(doc: str, out: Path, formats: list[str], priors: list[str],
                format_choices: list[str]) -> argparse.ArgumentParser:
    """A parser with the options of a benchmark over seeds x formats x priors: ``--seeds``,
    ``--formats``, ``--priors`` and ``--out`` (the JSON record, default ``out``); the script
    adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=formats, choices=format_choices)
    parser.add_argument("--priors", nargs="+", default=priors, choices=PRIORS)
    parser.add_argument("--out", type=Path, default=out)
    return parser


def groups(rows: list[dict], formats, priors):
    """``(format, prior, rows of that format and prior)`` for each pair, in order."""
    for fmt_name in formats:
        for prior in priors:
            yield fmt_name, prior, [r for r in rows
                                    if r["format"] == fmt_name and r["prior"] == prior]


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
