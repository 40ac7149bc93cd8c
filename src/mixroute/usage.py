"""``mixroute usage``: spend by day, route and model, and the saving against
sending every request to the premium default model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from mixroute.errors import MixrouteError

_GROUPS = {
    "day": "date(ts, 'unixepoch')",
    "route": "coalesce(route, '-')",
    "model": "coalesce(model, '-')",
}
_SUMS = (
    "count(*), sum(status >= 400), sum(input_tokens), sum(output_tokens), "
    "sum(cost_usd), sum(baseline_cost_usd), avg(latency_ms)"
)
_FIELDS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "avg_latency_ms",
)


def usage_report(path: str | Path) -> dict[str, Any]:
    """Totals and breakdowns from the ledger at ``path``.

    Raises ``MixrouteError`` if the file is missing or is not a usage ledger.
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
            total = _rows(conn, None)[0]
            report: dict[str, Any] = {"ledger": str(p), "total": total}
            for name in _GROUPS:
                report[f"by_{name}"] = _rows(conn, name)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise MixrouteError(f"{p} is not a readable usage ledger ({exc})") from None
    return report


def _rows(conn: sqlite3.Connection, group: str | None) -> list[dict[str, Any]]:
    if group is None:
        cur = conn.execute(f"SELECT {_SUMS} FROM usage")
        keys: tuple[str, ...] = _FIELDS
    else:
        expr = _GROUPS[group]
        cur = conn.execute(f"SELECT {expr}, {_SUMS} FROM usage GROUP BY 1 ORDER BY 1")
        keys = (group, *_FIELDS)
    out = []
    for row in cur.fetchall():
        item = {k: (v if v is not None else 0) for k, v in zip(keys, row, strict=True)}
        item["saving_usd"] = item["baseline_cost_usd"] - item["cost_usd"]
        base = item["baseline_cost_usd"]
        item["saving_share"] = item["saving_usd"] / base if base else 0.0
        out.append(item)
    return out


def print_usage(path: str | Path, *, as_json: bool = False) -> None:
    """Print the report as rich tables, or as one JSON object."""
    report = usage_report(path)
    if as_json:
        print(json.dumps(report, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = report["total"]
    console.print(
        f"[bold]{t['requests']}[/] requests ({t['errors']} errors) in "
        f"{report['ledger']}: spent [bold]${t['cost_usd']:.4f}[/], all-premium "
        f"baseline ${t['baseline_cost_usd']:.4f}, saving "
        f"[bold green]${t['saving_usd']:.4f} ({t['saving_share']:.1%})[/]"
    )
    for name in _GROUPS:
        table = Table(title=f"by {name}")
        table.add_column(name)
        for col in (
            "requests",
            "errors",
            "tokens in/out",
            "cost $",
            "baseline $",
            "saving",
            "avg ms",
        ):
            table.add_column(col, justify="right")
        for r in report[f"by_{name}"]:
            table.add_row(
                str(r[name]),
                str(r["requests"]),
                str(r["errors"]),
                f"{r['input_tokens']}/{r['output_tokens']}",
                f"{r['cost_usd']:.4f}",
                f"{r['baseline_cost_usd']:.4f}",
                f"{r['saving_share']:.1%}",
                f"{r['avg_latency_ms']:.0f}",
            )
        console.print(table)
