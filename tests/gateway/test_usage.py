"""``mixroute usage`` over a real ledger file."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from mixroute.cli import app
from mixroute.state.ledger import Ledger, UsageRow


def _row(rid: str, route: str, model: str, cost: float, base: float, status: int = 200):
    return UsageRow(
        rid,
        time.time(),
        None,
        route,
        0.95,
        "route:confident",
        model,
        model,
        status,
        100,
        50,
        cost,
        base,
        12.0,
        5.0,
        False,
        None,
    )


def test_usage_json_and_tables(tmp_path) -> None:
    path = tmp_path / "u.sqlite"
    ledger = Ledger(str(path))
    ledger.start()
    ledger.record(_row("a", "math", "medium", 0.002, 0.010))
    ledger.record(_row("b", "chat", "small", 0.001, 0.010))
    ledger.record(_row("c", "chat", "small", 0.0, 0.0, status=400))
    ledger.close()

    runner = CliRunner()
    out = runner.invoke(app, ["usage", "--ledger", str(path), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    total = report["total"]
    assert (total["requests"], total["errors"]) == (3, 1)
    assert abs(total["saving_usd"] - 0.017) < 1e-9
    assert {r["model"]: r["requests"] for r in report["by_model"]} == {
        "medium": 1,
        "small": 2,
    }
    table = runner.invoke(app, ["usage", "--ledger", str(path)])
    assert table.exit_code == 0
    assert "by route" in table.output and "85.0%" in table.output


def test_usage_missing_ledger_is_a_clear_error(tmp_path) -> None:
    out = CliRunner().invoke(app, ["usage", "--ledger", str(tmp_path / "no.sqlite")])
    assert out.exit_code == 1
    assert "does not exist" in out.output
