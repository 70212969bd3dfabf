"""One self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no external files."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field, replace
from html import escape

from selfsight.reports.style import PIXEL_RATIO


@dataclass
class Card:
    """One figure with a sentence on how to read it, or a note saying why it is missing."""

    key: str  # file stem of the PNG and the element id
    title: str
    caption: str
    png: bytes | None = None
    note: str | None = None
    wide: bool = False
    table: list[tuple[str, ...]] = field(default_factory=list)  # header row, then rows


@dataclass
class Section:
    """The headline numbers, figures and details for one evaluation set (or the run itself)."""

    title: str
    # (metric, this backbone, raw pixels, backbone minus pixels or None)
    headline: list[tuple[str, str, str, float | None]] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --accent:#2563eb; --bg:#f5f6f8; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); line-height:1.5; font-size:16px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1240px; margin:0 auto; padding:28px 24px 64px; }
header h1 { font-size:28px; margin:0 0 4px; letter-spacing:-0.01em; }
header .sub { color:var(--muted); margin:0 0 14px; font-size:15px; }
.facts { display:flex; flex-wrap:wrap; gap:8px; margin:0 0 8px; padding:0; list-style:none; }
.facts li { background:#fff; border:1px solid var(--line); border-radius:999px; padding:3px 12px;
  font-size:14px; }
.facts b { font-weight:600; }
h2 { font-size:21px; margin:34px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--line); }
.headline { border-collapse:collapse; background:#fff; border:1px solid var(--line);
  border-radius:10px; overflow:hidden; min-width:min(560px,100%); margin:4px 0 18px; }
.headline th, .headline td { padding:8px 16px; text-align:left;
  border-bottom:1px solid var(--line); }
.headline th { background:#f9fafb; font-size:13px; color:var(--muted); font-weight:600;
  text-transform:uppercase; letter-spacing:.04em; }
.headline td.num { font-variant-numeric:tabular-nums; text-align:right; }
.headline td.main { font-weight:700; font-size:17px; color:var(--accent); }
.headline td.base { color:var(--muted); }
.headline td.up { color:#15803d; font-weight:600; }
.headline td.down { color:#b91c1c; font-weight:600; }
.headline tr:last-child td { border-bottom:none; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(min(460px, 100%), 1fr));
  gap:18px; grid-auto-flow:dense; }
.card { background:#fff; border:1px solid var(--line); border-radius:12px; padding:16px 18px 14px;
  box-shadow:0 1px 2px rgba(0,0,0,.04); display:flex; flex-direction:column; }
.card.wide { grid-column:1 / -1; }
.card h3 { margin:0 0 10px; font-size:17px; }
.card img { max-width:100%; height:auto; display:block; margin:0 auto; }
.card p.how { margin:10px 0 0; color:#374151; font-size:14.5px; }
.card.missing { background:#fafafa; border-style:dashed; align-self:start; }
.card.missing p, .card.missing li { color:var(--muted); margin:0; font-size:14.5px; }
.card.missing ul { margin:0; padding-left:20px; }
.card.missing b { color:var(--ink); font-weight:600; }
table.numbers { border-collapse:collapse; font-size:14px; margin:12px auto 0;
  font-variant-numeric:tabular-nums; }
table.numbers th, table.numbers td { padding:4px 10px; text-align:right; white-space:nowrap;
  border-bottom:1px solid var(--line); }
.card .scroll { overflow-x:auto; }
table.numbers th { color:var(--muted); font-weight:600; font-size:13px; }
table.numbers td:first-child, table.numbers th:first-child { text-align:left; }
table.numbers tr:last-child td { border-bottom:none; }
.notes { color:var(--muted); font-size:14px; margin:6px 0 14px; }
table.details { border-collapse:collapse; font-size:14px; margin-top:4px; }
table.details td { padding:3px 14px 3px 0; vertical-align:top; }
table.details td:first-child { color:var(--muted); white-space:nowrap; }
footer { margin-top:40px; color:var(--muted); font-size:13px; }
"""


def display_width(png: bytes) -> int:
    """The CSS width a figure is drawn for: its PNG width (IHDR) over the pixel ratio."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG image")
    return round(struct.unpack(">I", png[16:20])[0] / PIXEL_RATIO)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>"
                   for row in rows[1:])
    return (f'<div class="scroll"><table class="numbers"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _card(card: Card, png: bytes) -> str:
    wide = " wide" if card.wide else ""
    return (f'<section class="card{wide}" id="card-{escape(card.key)}">'
            f"<h3>{escape(card.title)}</h3>"
            f'<img id="fig-{escape(card.key)}" alt="{escape(card.title)}" '
            f'style="width:{display_width(png)}px" src="{data_uri(png)}">'
            f'{_table(card.table)}<p class="how">{escape(card.caption)}</p></section>')


def _not_drawn(cards: list[Card]) -> str:
    """Every figure that could not be drawn, in one card: a reader scans past one list, not a
    page of empty boxes."""
    if not cards:
        return ""
    items = "".join(f'<li id="card-{escape(c.key)}"><b>{escape(c.title)}</b>: '
                    f"{escape(c.note or 'not available')}</li>" for c in cards)
    return f'<section class="card missing wide"><h3>Not drawn</h3><ul>{items}</ul></section>'


def _delta(delta: float | None) -> str:
    if delta is None:
        return '<td class="num"></td>'
    kind = "up" if delta > 0 else "down" if delta < 0 else ""
    text = f"{delta:+.3f}".replace("-", "\u2212")  # a real minus sign
    return f'<td class="num {kind}">{text}</td>'


def _headline(rows: list[tuple[str, str, str, float | None]]) -> str:
    if not rows:
        return ""
    # No pixel baseline anywhere (a quick evaluation): no columns of dashes.
    pixels = any(p != "\u2013" or d is not None for _, _, p, d in rows)
    body = "".join(f'<tr><td>{escape(m)}</td><td class="num main">{escape(v)}</td>'
                   + (f'<td class="num base">{escape(p)}</td>{_delta(d)}' if pixels else "")
                   + "</tr>" for m, v, p, d in rows)
    baseline = "<th>raw pixels</th><th>gain</th>" if pixels else ""
    return ('<table class="headline"><thead><tr><th>metric</th><th>this backbone</th>'
            f"{baseline}</tr></thead><tbody>{body}</tbody></table>")


def _details(rows: list[tuple[str, str]]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return (f'<section class="card wide details"><h3>Details</h3>'
            f'<table class="details">{body}</table></section>')


def page(title: str, subtitle: str, facts: list[tuple[str, str]],
         sections: list[Section], footer: str = "") -> str:
    """The whole report as one HTML string (every figure embedded)."""
    chips = "".join(f"<li>{escape(k)} <b>{escape(v)}</b></li>" for k, v in facts)
    parts = [f"<header><h1>{escape(title)}</h1><p class='sub'>{escape(subtitle)}</p>"
             f'<ul class="facts">{chips}</ul></header>']
    for s in sections:
        notes = "".join(f'<p class="notes">{escape(n)}</p>' for n in s.notes)
        drawn = [c for c in s.cards if c.png is not None]
        halves = [i for i, c in enumerate(drawn) if not c.wide]
        if len(halves) % 2:  # a half-width card alone in its row: give it the row
            drawn[halves[-1]] = replace(drawn[halves[-1]], wide=True)
        cards = "".join(_card(c, c.png) for c in drawn)
        cards += _not_drawn([c for c in s.cards if c.png is None])
        parts.append(f"<h2>{escape(s.title)}</h2>{_headline(s.headline)}{notes}"
                     f'<div class="grid">{cards}{_details(s.details)}</div>')
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
            + "".join(parts) + f"<footer>{escape(footer)}</footer></main></body></html>\n")
