"""A self-contained report.html: inline CSS, figures as base64 PNG, no scripts, no external requests (a live
report reloads itself with a ``<meta http-equiv="refresh">``)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f3f7; } td:first-child, th:first-child { text-align: left; }
tr.baseline td { background: #fbf7e6; }
td.text { text-align: left; } .note { color: #555; font-style: italic; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 3px; }
"""


def table(df: pd.DataFrame, table_id: str, baseline: str | None = None) -> str:
    """``df`` holds display strings already (the caller formats numbers once, for CSV and HTML alike)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cls = ' class="baseline"' if baseline is not None and "arm" in df.columns and \
            rec[list(df.columns).index("arm")] == baseline else ""
        cells = "".join(f"<td{'' if _numeric(str(v)) else ' class=text'}>{html.escape(str(v))}</td>" for v in rec)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == "—"
    return True


def _inline(text: str) -> str:
    """Escaped text with Markdown-style `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def image(path: Path, alt: str) -> str:
    """An ``<img>`` paragraph with the PNG at ``path`` inlined as a data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def paragraph(text: str, note: bool = False) -> str:
    """``text`` (inline Markdown: code, bold) as an HTML paragraph; ``note`` styles it as a note."""
    return f'<p{" class=note" if note else ""}>{_inline(text)}</p>'


def page(title: str, body: list[str], refresh_s: int = 0) -> str:
    """A whole HTML document: ``title`` as heading, then the ``body`` fragments; ``refresh_s`` > 0: the
    browser reloads it that often (a live report; the final one has none, so reloading stops)."""
    reload = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s > 0 else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"{reload}<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")
