"""``mixroute replay``: route recorded traffic without calling any model.

Each JSONL row holds a ``prompt`` (string) or ``messages`` (OpenAI list), and
optionally the answer's length as ``completion_tokens`` (or ``output_tokens``);
rows without it are priced with ``--output-tokens``. The report is the traffic
split per route and model and the projected cost against sending everything to
``policies.default_model``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixroute.config.schema import MixrouteConfig
from mixroute.errors import MixrouteError
from mixroute.policy import SeedPolicy
from mixroute.tokens import count_message_tokens


@dataclass
class ReplayReport:
    requests: int = 0
    skipped: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    cost_by_model: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cost_usd: float = 0.0
    baseline_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    # One per routed row, for the HTML report (mixroute.report.ReportRow).
    rows: list[Any] = field(default_factory=list)

    @property
    def saving_share(self) -> float:
        if self.baseline_usd <= 0:
            return 0.0
        return 1.0 - self.cost_usd / self.baseline_usd

    def as_dict(self, baseline_model: str) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "skipped_rows": self.skipped,
            "routes": dict(self.routes.most_common()),
            "models": dict(self.models.most_common()),
            "rules": dict(self.rules.most_common()),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "cost_by_model_usd": {
                k: round(v, 6) for k, v in self.cost_by_model.items()
            },
            "baseline_model": baseline_model,
            "baseline_cost_usd": round(self.baseline_usd, 6),
            "saving_usd": round(self.baseline_usd - self.cost_usd, 6),
            "saving_share": round(self.saving_share, 4),
        }


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) for each JSON object line; errors name the line."""
    try:
        handle = path.open("r", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise MixrouteError(
            f"{path}: the file cannot be read ({exc.strerror})"
        ) from None
    with handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MixrouteError(
                    f"{path}:{n}: not a JSON object ({exc.msg})"
                ) from None
            if not isinstance(row, dict):
                raise MixrouteError(f"{path}:{n}: each line must be a JSON object")
            yield n, row


def row_messages(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        return [m for m in messages if isinstance(m, dict)]
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return None


def replay(
    config: MixrouteConfig, path: Path, *, output_tokens: int = 256
) -> ReplayReport:
    from mixroute.classify import build_classifier
    from mixroute.progress import progress_iter

    classifier = build_classifier(config)
    policy = SeedPolicy(config)
    baseline = config.model(config.policies.default_model)
    report = ReplayReport()
    rows = list(read_rows(path))
    for _, row in progress_iter(rows, "replaying"):
        messages = row_messages(row)
        if messages is None:
            report.skipped += 1
            continue
        c = classifier.classify_messages(messages)
        decision = policy.decide(c)
        model = config.model(decision.model)
        n_in = count_message_tokens(messages)
        n_out = row.get("completion_tokens", row.get("output_tokens", output_tokens))
        if not isinstance(n_out, int) or n_out < 0:
            n_out = output_tokens
        cost = price(
            model.price.input_per_mtok, model.price.output_per_mtok, n_in, n_out
        )
        report.requests += 1
        report.routes[decision.route or "-"] += 1
        report.models[decision.model] += 1
        report.rules[decision.rule] += 1
        report.cost_by_model[decision.model] += cost
        report.cost_usd += cost
        report.baseline_usd += price(
            baseline.price.input_per_mtok, baseline.price.output_per_mtok, n_in, n_out
        )
        report.input_tokens += n_in
        report.output_tokens += n_out
        report.rows.append(_report_row(row, decision, c, cost, baseline, n_in, n_out))
    return report


def _report_row(
    row: dict[str, Any],
    decision: Any,
    c: Any,
    cost: float,
    baseline: Any,
    n_in: int,
    n_out: int,
) -> Any:
    from mixroute.report import ReportRow

    def label(name: str) -> bool | None:
        value = row.get(name)
        return value if isinstance(value, bool) else None

    ts = row.get("ts")
    return ReportRow(
        route=decision.route,
        model=decision.model,
        cost_usd=cost,
        baseline_usd=price(
            baseline.price.input_per_mtok, baseline.price.output_per_mtok, n_in, n_out
        ),
        ts=float(ts) if isinstance(ts, int | float) else None,
        rule=decision.rule,
        premium=decision.model == baseline.name,
        hard_probability=c.hard_probability,
        weak_correct=label("weak_correct"),
        strong_correct=label("strong_correct"),
    )


def price(in_per_mtok: float, out_per_mtok: float, n_in: int, n_out: int) -> float:
    """USD for ``n_in`` prompt and ``n_out`` completion tokens."""
    return (n_in * in_per_mtok + n_out * out_per_mtok) / 1_000_000


def run_replay(
    config: MixrouteConfig,
    path: Path,
    *,
    as_json: bool,
    output_tokens: int = 256,
    html: Path | None = None,
) -> None:
    report = replay(config, path, output_tokens=output_tokens)
    baseline = config.policies.default_model
    if html is not None:
        from mixroute.report import write_html

        write_html(
            report.rows,
            html,
            title="mixroute replay: projected savings",
            baseline_model=baseline,
            source=f"replay of {path.name} ({report.requests} prompts)",
        )
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(baseline)) + "\n")
        return
    _print_report(report, baseline)


def _print_report(report: ReplayReport, baseline: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    n = max(report.requests, 1)
    routes = Table(title=f"Traffic split by route ({report.requests} requests)")
    routes.add_column("route")
    routes.add_column("requests", justify="right")
    routes.add_column("share", justify="right")
    for name, count in report.routes.most_common():
        routes.add_row(name, str(count), f"{count / n:.1%}")
    console.print(routes)

    models = Table(title="Traffic split by model")
    for col in ("model", "requests", "share", "projected cost (USD)"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for name, count in report.models.most_common():
        models.add_row(
            name, str(count), f"{count / n:.1%}", f"{report.cost_by_model[name]:.4f}"
        )
    console.print(models)

    console.print(
        f"Projected cost: [bold]${report.cost_usd:.4f}[/bold] vs "
        f"${report.baseline_usd:.4f} sending everything to '{baseline}': "
        f"saving ${report.baseline_usd - report.cost_usd:.4f} "
        f"([bold green]{report.saving_share:.1%}[/bold green]). "
        f"Tokens: {report.input_tokens} in, {report.output_tokens} out (estimated)."
    )
    if report.skipped:
        console.print(f"[yellow]{report.skipped} rows had no prompt or messages.[/]")
