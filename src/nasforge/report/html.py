"""Small HTML helpers of the run report (:mod:`nasforge.report.build`): escaping, tables,
number formatting, the page's CSS and the script that records its layout for tests."""

from __future__ import annotations

import html
import json
import math
from typing import Any


def esc(s: Any) -> str:
    return html.escape(str(s))


def pre(text: str, cls: str = "") -> str:
    return f'<pre class="{cls}">{esc(text)}</pre>'


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s.lower()).strip("-") or "x"


def compact(v: Any) -> str:
    s = json.dumps(v, separators=(",", ":"))
    return s if len(s) < 300 else s[:297] + "..."


CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px}
figure{margin:10px 0}img.figure{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#555}
pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}.note{color:#8a5a00;font-size:13px}.status{font-size:14px}
nav a{margin-right:12px;font-size:13px}
"""

LAYOUT_JS = """
window.addEventListener('load', function () {
  var out = {width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight, images: [], sections: []};
  document.querySelectorAll('img.figure').forEach(function (im) {
    var r = im.getBoundingClientRect();
    out.images.push({id: im.id, x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height,
                     loaded: im.complete && im.naturalWidth > 0});
  });
  document.querySelectorAll('section').forEach(function (s) {
    var r = s.getBoundingClientRect();
    out.sections.push({id: s.id, y: r.top + window.scrollY, h: r.height});
  });
  var el = document.createElement('script');
  el.type = 'application/json'; el.id = 'nasforge-layout'; el.textContent = JSON.stringify(out);
  document.body.appendChild(el);
});
"""
