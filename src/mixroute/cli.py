"""The ``mixroute`` command line: serve, route, eval, train, replay, config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mixroute.config import load_config
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ConfigError, MixrouteError
from mixroute.keys_cli import keys_app

app = typer.Typer(
    help="mixroute: an OpenAI-compatible gateway that routes each prompt to the "
    "model that fits it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check or show configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file; default: embedded."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _load(path: Path | None) -> MixrouteConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from None


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The YAML config file to validate.")],
) -> None:
    """Validate FILE and print every problem with its path; exit 1 on any."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        typer.echo(f"{len(exc.problems)} problem(s) in {file}", err=True)
        raise typer.Exit(1) from None
    unset = [m.name for m in config.models if not m.configured]
    typer.echo(f"{file}: OK ({len(config.models)} models, {len(config.routes)} routes)")
    if unset:
        typer.echo(f"note: models with no base_url yet: {', '.join(unset)}")


@config_app.command("show")
def config_show() -> None:
    """Print the embedded default config (a starting point for your own)."""
    from mixroute.config import default_config_text

    typer.echo(default_config_text())


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug|info|warning|error; default: observability.log_level"),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="text|json; default: observability.log_format"),
    ] = None,
) -> None:
    """Start the OpenAI-compatible gateway (default 127.0.0.1:8080)."""
    from mixroute.api.server import run_server

    if log_format not in (None, "text", "json"):
        raise _fail(f"--log-format must be text or json, not {log_format!r}.")
    if log_level not in (None, "debug", "info", "warning", "error"):
        raise _fail(
            f"--log-level must be debug, info, warning or error, not {log_level!r}."
        )
    cfg = _load(config)
    run_server(
        cfg,
        host=host,
        port=port,
        log_level=log_level,
        config_path=config,
        log_format="json" if log_format == "json" else "text" if log_format else None,
    )


@app.command()
def route(
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads stdin.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify PROMPT and print the routing decision, without calling a model."""
    from mixroute.classify import build_classifier
    from mixroute.policy import SeedPolicy

    cfg = _load(config)
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise _fail("the prompt is empty; give some text, or '-' to read stdin")
    try:
        c = build_classifier(cfg).classify(text)
    except MixrouteError as exc:
        raise _fail(str(exc)) from None
    d = SeedPolicy(cfg).decide(c)
    out: dict[str, Any] = {
        "model": d.model,
        "candidates": list(d.candidates),
        "route": d.route,
        "rule": d.rule,
        "confidence": round(c.confidence, 4),
        "tier": c.tier,
        "hard_probability": round(c.hard_probability, 4),
        "backend": c.backend,
        "latency_ms": round(c.latency_ms, 3),
        "scores": {
            k: round(v, 4)
            for k, v in sorted(c.scores.items(), key=lambda kv: -kv[1])[:5]
        },
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"route {d.route} (confidence {c.confidence:.2f}, tier {c.tier}) → "
        f"model {d.model} by rule {d.rule}"
    )
    typer.echo(f"fallbacks: {' → '.join(d.candidates[1:]) or 'none'}")
    top = ", ".join(f"{k} {v:.2f}" for k, v in out["scores"].items())
    typer.echo(f"top scores: {top}   [{c.backend}, {c.latency_ms:.1f} ms]")


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="JSONL rows with prompt and category.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    predictions: Annotated[
        Path | None, typer.Option(help="Write one JSON line per row here.")
    ] = None,
) -> None:
    """Measure the classifier on labelled prompts: accuracy, F1, ECE, latency."""
    from mixroute.evaluation import run_eval

    cfg = _load(config)
    try:
        run_eval(cfg, file, as_json=as_json, predictions=predictions)
    except MixrouteError as exc:
        raise _fail(str(exc)) from None


@app.command()
def train(
    file: Annotated[Path, typer.Argument(help="JSONL rows with prompt and category.")],
    out: Annotated[Path, typer.Option(help="Where to write the head artifact.")] = Path(
        "mixroute-head.npz"
    ),
    config: ConfigOpt = None,
    feedback: Annotated[
        Path | None,
        typer.Option(help="Also learn from the rated requests in this feedback file."),
    ] = None,
) -> None:
    """Fit a calibrated linear head on labelled prompts; point classifier.head at it."""
    from mixroute.classify.train import train_head_cli

    cfg = _load(config)
    try:
        if feedback is not None:
            from mixroute.policy.feedback import merge_feedback_rows

            file = merge_feedback_rows(cfg, file, feedback)
        from mixroute.classify.difficulty import (
            has_difficulty_labels,
            train_difficulty_cli,
        )

        if has_difficulty_labels(file):
            # weak_correct/strong_correct rows train the difficulty scorer.
            train_difficulty_cli(cfg, file, out)
            return
        train_head_cli(cfg, file, out)
    except MixrouteError as exc:
        raise _fail(str(exc)) from None


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="JSONL rows with a prompt or messages.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    output_tokens: Annotated[
        int, typer.Option(help="Assumed answer length for rows that do not say.")
    ] = 256,
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML report here.")
    ] = None,
) -> None:
    """Route every prompt without calling a model; print split and projected cost."""
    from mixroute.replay import run_replay

    cfg = _load(config)
    try:
        run_replay(cfg, file, as_json=as_json, output_tokens=output_tokens, html=html)
    except MixrouteError as exc:
        raise _fail(str(exc)) from None


@app.command()
def usage(
    ledger: Annotated[
        Path | None,
        typer.Option(help="The SQLite usage ledger; default: server.ledger_path."),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML report here.")
    ] = None,
) -> None:
    """Print spend by day, route and model, and the saving against all-premium."""
    from mixroute.usage import print_usage

    cfg = _load(config) if ledger is None or html is not None else None
    path = ledger if ledger is not None else Path(_need(cfg).server.ledger_path)
    try:
        print_usage(path, as_json=as_json)
        if html is not None:
            cfg = _need(cfg)
            from mixroute.report import rows_from_ledger, write_html

            rows = rows_from_ledger(path)
            write_html(
                rows,
                html,
                title="mixroute usage: spend and savings",
                baseline_model=cfg.policies.default_model,
                source=f"usage ledger {path.name} ({len(rows)} answered requests)",
            )
    except MixrouteError as exc:
        raise _fail(str(exc)) from None


def _need(cfg: MixrouteConfig | None) -> MixrouteConfig:
    assert cfg is not None
    return cfg


def main() -> None:
    """Entry point. Unexpected failures print one line, not a traceback,
    unless MIXROUTE_DEBUG is set."""
    import os

    try:
        app()
    except Exception as exc:
        if os.environ.get("MIXROUTE_DEBUG"):
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} "
            "(set MIXROUTE_DEBUG=1 for details)",
            err=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
