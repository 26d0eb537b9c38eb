"""Assemble sections into one self-contained HTML page and a Markdown summary.

The HTML has inline CSS, PNGs embedded as base64 ``data:`` URIs, and no script or external
resource, so it opens offline and in a sandboxed viewer.
"""

from __future__ import annotations

import base64
import html as _html
from pathlib import Path

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;
padding:1.5em;color:#222;background:#fff;line-height:1.45}
h1{margin-top:0;font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.warn{background:#fff3cd;border:2px solid #e0a800;border-radius:6px;padding:.8em 1.2em;margin:1em 0}
.warn h2{margin:0 0 .3em 0;border:none;color:#8a6d00;font-size:1.2em}.warn li{margin:.2em 0}
.ok{background:#e8f5e9;border:1px solid #81c784;border-radius:6px;padding:.5em 1em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}caption{text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}nav a{margin-right:1em}
"""


def data_uri(png_bytes: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def render_html(title: str, sections: list[dict], warnings: list[str], subtitle: str = "") -> str:
    """The report page: title, warning banner, table of contents, then every section."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{_html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f"<p>{_html.escape(subtitle)}</p>")
    if warnings:
        items = "".join(f"<li>{_html.escape(w)}</li>" for w in warnings)
        parts.append(f'<div class="warn" id="warnings"><h2>&#9888; Warnings</h2><ul>{items}</ul></div>')
    else:
        parts.append('<div class="ok" id="no-warnings">No warnings: no divergence, and the checks '
                     "that apply passed.</div>")
    parts.append("<nav>" + "".join(f'<a href="#{s["key"]}">{_html.escape(s["title"])}</a>'
                                   for s in sections) + "</nav>")
    for s in sections:
        parts.append(f'<section id="{s["key"]}"><h2>{_html.escape(s["title"])}</h2>')
        parts.append(s["html"])
        for _, caption, png in s.get("figures", []):
            parts.append(f'<figure><img alt="{_html.escape(caption)}" src="{data_uri(png)}">'
                         f"<figcaption>{_html.escape(caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(title: str, sections: list[dict], warnings: list[str], figure_dir: Path | None,
                    link_prefix: str = "", subtitle: str = "") -> str:
    """Markdown summary; figures are written to ``figure_dir`` and linked (skipped when ``None``).

    PNGs left in ``figure_dir`` by an earlier report that this one does not make (the LOO-PIT
    figure of a report with ``loo``, remade without it) are removed: the folder holds this
    report's figures only."""
    if figure_dir is not None and figure_dir.is_dir():
        current = {name for s in sections for name, _, _ in s.get("figures", [])}
        for stale in figure_dir.glob("*.png"):
            if stale.name not in current:
                stale.unlink()
    lines = [f"# {title}", ""]
    if subtitle:
        lines += [subtitle, ""]
    if warnings:
        lines += ["> **Warnings**", ">"] + [f"> - {w}" for w in warnings] + [""]
    for s in sections:
        lines += [f"## {s['title']}", "", s["markdown"], ""]
        for name, caption, png in s.get("figures", []):
            if figure_dir is not None:
                figure_dir.mkdir(parents=True, exist_ok=True)
                (figure_dir / name).write_bytes(png)
                lines += [f"![{caption}]({link_prefix}{name})", ""]
    return "\n".join(lines)
