"""report.html: the Report as one self-contained page (inline CSS, images as data: URIs, no network)."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from ..model import Report, right_aligned

FILENAME = "report.html"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafafa}code{background:#f3f3f3;padding:0 .2em}
ul.answers li{margin:.25em 0}p.method{color:#555;font-size:.92em}figure{margin:.6em 0}
figcaption{color:#555;font-size:.85em}img{max-width:100%;height:auto}li.warn::marker{content:"⚠ "}
"""


def _text(s: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(s))


def html_table(df: pd.DataFrame, table_id: str | None = None) -> str:
    attr = f' id="{table_id}"' if table_id else ""
    head = "".join(f'<th{" class=num" if right_aligned(c) else ""}>{html.escape(str(c))}</th>' for c in df.columns)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if right_aligned(c) else ""}>{html.escape(str(v))}</td>'
                                    for c, v in zip(df.columns, row)) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(caption: str, rel: str, run_path: Path, figure_id: str | None = None) -> str:
    path = run_path / rel
    if not path.exists():
        return f"<p>(figure {html.escape(rel)} missing: run <code>bench report</code>)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    attr = f' id="{figure_id}"' if figure_id else ""
    return (f'<figure{attr}><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render(r: Report, run_path: Path) -> str:
    p = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(r.title)}</title>",
         f"<style>{CSS}</style></head><body>"]
    if r.glance_plot:  # the answer first, before any text
        p.append(_figure(*r.glance_plot, run_path, figure_id="at-a-glance"))
    p.append(f"<h1>{html.escape(r.title)}</h1>")
    p += [f"<p>{_text(line)}</p>" for line in r.intro]
    p += ["<h2>Frameworks</h2>", html_table(r.frameworks)]
    p += ['<section id="verdict-section"><h2>Verdict: which toolbox is best?</h2>',
          f'<p class="method">{_text(r.verdict_method)}</p>']
    if len(r.verdict):
        p.append(html_table(r.verdict, "verdict"))
    p.append('<ul class="answers">' + "".join(f"<li><strong>{html.escape(q)}:</strong> {_text(a)}</li>"
                                              for q, a in r.answers) + "</ul></section>")
    if r.keras:
        p += [f'<section id="keras-backends"><h2>{html.escape(r.keras.title)}</h2>', html_table(r.keras.table)]
        p += [f'<p class="method">{_text(n)}</p>' for n in r.keras.notes] + ["</section>"]
    if r.by_host:
        p += [f'<section id="by-host"><h2>{html.escape(r.by_host.title)}</h2>', html_table(r.by_host.table)]
        p += [f'<p class="method">{_text(n)}</p>' for n in r.by_host.notes] + ["</section>"]
    if r.convergence:
        p += [f'<section id="time-to-accuracy"><h2>{html.escape(r.convergence.title)}</h2>',
              html_table(r.convergence.table)]
        p += [f'<p class="method">{_text(n)}</p>' for n in r.convergence.notes]
        p += [_figure(cap, rel, run_path) for cap, rel in r.convergence.plots] + ["</section>"]
    p.append("<h2>Settings that differ between frameworks</h2>")
    p.append(html_table(r.settings, "settings") if len(r.settings)
             else "<p>None: every compared setting is the same.</p>")
    if r.roofline:
        p += [f'<section id="roofline"><h2>{html.escape(r.roofline.title)}</h2>', html_table(r.roofline.table)]
        p += [f'<p class="method">{_text(n)}</p>' for n in r.roofline.notes] + ["</section>"]
    p += ["<h2>Results by job</h2>", f'<p class="method">{_text(r.method)}</p>']
    for s in r.sections:
        p += [f"<section><h3>{html.escape(s.title)}</h3>", html_table(s.table)]
        p += [f"<p>{_text(n)}</p>" for n in s.notes]
        p += [_figure(cap, rel, run_path) for cap, rel in s.plots] + ["</section>"]
    if r.startup_plot:
        p += ["<h2>Start-up</h2>", _figure(*r.startup_plot, run_path)]
    if r.warnings or r.not_measured or r.notes:
        p.append('<section id="warnings"><h2>Warnings</h2>')
        for heading, items in r.warnings:
            p += [f"<h3>{html.escape(heading)}</h3>",
                  "<ul>" + "".join(f'<li class="warn">{html.escape(i)}</li>' for i in items) + "</ul>"]
        for heading, df in r.not_measured:
            p += [f"<h3>{html.escape(heading)}</h3>", html_table(df)]
        p += [f"<p>Note: {html.escape(n)}</p>" for n in r.notes]
        p.append("</section>")
    p.append("</body></html>")
    return "\n".join(p) + "\n"
