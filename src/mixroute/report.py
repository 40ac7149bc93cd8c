"""Savings reports: one self-contained HTML file with plots drawn by matplotlib.

``mixroute replay FILE --html out.html`` and ``mixroute usage --html out.html``
both end here. Each request becomes a ``ReportRow``; the report shows the
traffic share per route and model, cost against sending everything to the
premium default model, cumulative savings over time and, where rows carry
quality labels (``weak_correct`` / ``strong_correct``, as in the cost-quality
sets), the cost-quality curve. Plots are inline SVG, so the file opens
anywhere with no network. matplotlib comes with the ``[report]`` extra.
"""

from __future__ import annotations

import html
import io
import re
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixroute.errors import MixrouteError

_BLUE, _GREY, _GREEN, _RED = "#3a6ff7", "#9aa3b2", "#138a52", "#c62f2f"


@dataclass(frozen=True)
class ReportRow:
    """One request as the report sees it. Costs in USD; ``ts`` in Unix seconds
    (None for replayed rows without one). ``weak_correct`` says whether a
    non-premium model answers it right, ``strong_correct`` the premium one."""

    route: str | None
    model: str
    cost_usd: float
    baseline_usd: float
    ts: float | None = None
    rule: str | None = None
    premium: bool = False
    hard_probability: float | None = None
    weak_correct: bool | None = None
    strong_correct: bool | None = None


def rows_from_ledger(path: str | Path) -> list[ReportRow]:
    """Answered requests from a usage ledger, oldest first.

    Raises ``MixrouteError`` if the file is missing or not a ledger.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise MixrouteError(
            f"the usage ledger {p} does not exist (the server writes it where "
            "its config's server.ledger_path says: pass that config with "
            "--config, or the file with --ledger)"
        )
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            cur = conn.execute(
                "SELECT ts, route, model, rule, cost_usd, baseline_cost_usd "
                "FROM usage WHERE model IS NOT NULL ORDER BY ts"
            )
            raw = cur.fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise MixrouteError(f"{p} is not a readable usage ledger ({exc})") from None
    return [
        ReportRow(
            route=route,
            model=model,
            cost_usd=cost or 0.0,
            baseline_usd=base or 0.0,
            ts=ts,
            rule=rule,
        )
        for ts, route, model, rule, cost, base in raw
    ]


def write_html(
    rows: Sequence[ReportRow],
    path: str | Path,
    *,
    title: str,
    baseline_model: str,
    source: str,
) -> Path:
    """Render the report for ``rows`` to ``path`` and return the path."""
    out = Path(path)
    text = render_html(rows, title=title, baseline_model=baseline_model, source=source)
    try:
        out.write_text(text, "utf-8")
    except OSError as exc:
        raise MixrouteError(
            f"the report cannot be written to {out} ({exc.strerror})"
        ) from None
    return out


def render_html(
    rows: Sequence[ReportRow], *, title: str, baseline_model: str, source: str
) -> str:
    """The whole report as one HTML string (CSS and SVG plots inline)."""
    plt = _Plots()
    n = len(rows)
    cost = sum(r.cost_usd for r in rows)
    base = sum(r.baseline_usd for r in rows)
    saving = base - cost
    share = saving / base if base > 0 else 0.0
    routes = Counter(r.route or "-" for r in rows)
    models = Counter(r.model for r in rows)
    cost_by_model: dict[str, float] = defaultdict(float)
    for r in rows:
        cost_by_model[r.model] += r.cost_usd

    curve = cost_quality_curve(rows)
    with plt.style():
        figures = [
            ("Traffic share by route", _share_plot(plt, routes)),
            ("Traffic share by model", _share_plot(plt, models)),
            (
                "Cost against the single-model baseline",
                _cost_plot(plt, rows, baseline_model),
            ),
            ("Cumulative savings", _savings_plot(plt, rows)),
        ]
        if curve is not None:
            figures.append(("Cost-quality curve", _curve_plot(plt, curve)))
    note = (
        ""
        if curve is not None
        else "<p class=muted>No quality labels (weak_correct / strong_correct) in "
        "these rows, so there is no cost-quality curve.</p>"
    )

    e = html.escape
    tiles = [
        ("requests", f"{n}"),
        ("cost", f"${cost:.4f}"),
        (f"all-premium ({e(baseline_model)})", f"${base:.4f}"),
        ("saved", f"${saving:.4f} ({share:.1%})"),
    ]
    if curve is not None:
        tiles.append(("quality (labelled rows)", f"{curve['routed'][1]:.1%}"))
    table = "".join(
        f"<tr><td>{e(m)}</td><td>{c}</td><td>{c / max(n, 1):.1%}</td>"
        f"<td>${cost_by_model[m]:.4f}</td></tr>"
        for m, c in models.most_common()
    )
    body = "".join(f"<section><h2>{e(t)}</h2>{svg}</section>" for t, svg in figures)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tiles_html = "".join(
        f"<div class=tile><h3>{k}</h3><b>{v}</b></div>" for k, v in tiles
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}</style></head>
<body><header><h1>{e(title)}</h1>
<p class=muted>{e(source)} · generated {stamp} by mixroute</p></header>
<div class=tiles>{tiles_html}</div>
<main>{body}
<section><h2>Models</h2><table><tr><th>model</th><th>requests</th><th>share</th>
<th>cost</th></tr>{table}</table>{note}</section></main></body></html>
"""


def cost_quality_curve(rows: Sequence[ReportRow]) -> dict[str, Any] | None:
    """Cost (share of all-premium) and quality as more prompts go premium.

    Over the rows with both labels: the prompts most likely to be hard (by
    ``hard_probability``) move to the premium model first; the rest keep
    mixroute's choice. Returns the sweep, mixroute's own point and the two
    single-model ends, or None when no row is labelled.
    """
    lab = [
        r for r in rows if r.weak_correct is not None and r.strong_correct is not None
    ]
    if not lab:
        return None
    base = sum(r.baseline_usd for r in lab) or 1.0

    def point(premium: Sequence[bool]) -> tuple[float, float]:
        cost = sum(
            r.baseline_usd if p else r.cost_usd
            for r, p in zip(lab, premium, strict=True)
        )
        good = sum(
            bool(r.strong_correct if p else r.weak_correct)
            for r, p in zip(lab, premium, strict=True)
        )
        return cost / base, good / len(lab)

    order = sorted(range(len(lab)), key=lambda i: -(lab[i].hard_probability or 0.0))
    sweep = []
    for step in range(21):
        k = round(len(lab) * step / 20)
        chosen = set(order[:k])
        sweep.append(point([i in chosen or lab[i].premium for i in range(len(lab))]))
    return {
        "sweep": sweep,
        "routed": point([r.premium for r in lab]),
        "premium": point([True] * len(lab)),
        "labelled": len(lab),
    }


# plots -------------------------------------------------------------------------


class _Plots:
    """matplotlib without pyplot: no global figure state, no GUI backend."""

    def __init__(self) -> None:
        try:
            import matplotlib
            from matplotlib.figure import Figure
        except ImportError:
            raise MixrouteError(
                "the HTML report needs matplotlib: pip install 'mixroute[report]'"
            ) from None
        self.matplotlib = matplotlib
        self.Figure = Figure

    def subplots(self, figsize: tuple[float, float]) -> tuple[Any, Any]:
        fig = self.Figure(figsize=figsize)
        return fig, fig.subplots()

    def style(self) -> Any:
        """A context with the report's look (figures must be made inside it)."""
        rc: Any = {
            "svg.fonttype": "none",
            "svg.hashsalt": "mixroute",
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
        return self.matplotlib.rc_context(rc)

    def svg(self, fig: Any) -> str:
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        text = buf.getvalue()
        # Inline SVG: drop the XML prolog and doctype before <svg>, and the RDF
        # metadata block (creator links and dates say nothing about the traffic).
        text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
        return text[text.index("<svg") :]


def _share_plot(plt: _Plots, counts: Counter[str]) -> str:
    items = counts.most_common()[::-1]
    total = sum(counts.values()) or 1
    fig, ax = plt.subplots((7, 0.4 * len(items) + 1.0))
    ax.barh([k for k, _ in items], [v / total for _, v in items], color=_BLUE)
    for y, (_, v) in enumerate(items):
        ax.text(v / total, y, f" {v} ({v / total:.0%})", va="center")
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("share of requests")
    return plt.svg(fig)


def _cost_plot(plt: _Plots, rows: Sequence[ReportRow], baseline_model: str) -> str:
    by_route: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        by_route[r.route or "-"][0] += r.cost_usd
        by_route[r.route or "-"][1] += r.baseline_usd
    names = ["all", *sorted(by_route)]
    actual = [
        sum(v[0] for v in by_route.values()),
        *(by_route[k][0] for k in names[1:]),
    ]
    base = [sum(v[1] for v in by_route.values()), *(by_route[k][1] for k in names[1:])]
    fig, ax = plt.subplots((7, 3.2))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], base, 0.4, color=_GREY, label=f"all {baseline_model}")
    ax.bar([i + 0.2 for i in x], actual, 0.4, color=_BLUE, label="mixroute")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_ylabel("USD")
    ax.legend(frameon=False)
    return plt.svg(fig)


def _savings_plot(plt: _Plots, rows: Sequence[ReportRow]) -> str:
    timed = all(r.ts is not None for r in rows) and rows
    ordered = sorted(rows, key=lambda r: r.ts or 0.0) if timed else list(rows)
    saved, total = [], 0.0
    for r in ordered:
        total += r.baseline_usd - r.cost_usd
        saved.append(total)
    fig, ax = plt.subplots((7, 3.0))
    if timed:
        import datetime as dt

        xs: list[Any] = [
            dt.datetime.fromtimestamp(r.ts or 0.0, dt.UTC) for r in ordered
        ]
        ax.set_xlabel("time (UTC)")
        fig.autofmt_xdate()
    else:
        xs = list(range(1, len(ordered) + 1))
        ax.set_xlabel("requests, in file order")
    ax.plot(xs, saved, color=_GREEN)
    ax.fill_between(xs, saved, color=_GREEN, alpha=0.15)
    ax.set_ylabel("USD saved so far")
    return plt.svg(fig)


def _curve_plot(plt: _Plots, curve: dict[str, Any]) -> str:
    fig, ax = plt.subplots((7, 3.6))
    xs, ys = zip(*curve["sweep"], strict=True)
    ax.plot(xs, ys, "-o", color=_BLUE, markersize=3, label="hardest prompts to premium")
    rx, ry = curve["routed"]
    ax.plot([rx], [ry], "o", color=_GREEN, markersize=9, label="mixroute as routed")
    px, py = curve["premium"]
    ax.plot([px], [py], "s", color=_RED, markersize=7, label="all premium")
    ax.set_xlabel("cost (share of all-premium)")
    ax.set_ylabel(f"accuracy ({curve['labelled']} labelled prompts)")
    ax.legend(frameon=False, loc="lower right")
    return plt.svg(fig)


_CSS = """
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
background:#f6f7f9;color:#1d2330}
header{background:#fff;border-bottom:1px solid #e3e6eb;padding:.8rem 1.5rem}
h1{margin:0;font-size:1.4rem}h2{font-size:1rem;margin:.2rem 0 .6rem}
h3{margin:0;font-size:.75rem;text-transform:uppercase;color:#6b7383;font-weight:600}
.muted{color:#6b7383;margin:.2rem 0}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:1rem;
padding:1rem 1.5rem 0}
.tile,section{background:#fff;border:1px solid #e3e6eb;border-radius:8px;
padding:.8rem 1rem}
.tile b{font-size:1.4rem}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1rem;
padding:1rem 1.5rem}
svg{max-width:100%;height:auto}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e3e6eb}
"""
