"""``mixroute keys``: create, list and revoke client keys."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from mixroute.errors import ConfigError
from mixroute.state.keys import ClientKey, KeyStore

keys_app = typer.Typer(
    help="Manage client keys (only salted hashes are stored).", no_args_is_help=True
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file; default: embedded."),
]
StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Key store file; default: auth.keys_path."),
]


def _unreachable(exc: ConfigError) -> typer.Exit:
    for problem in exc.problems:
        typer.echo(f"error: {problem}", err=True)
    return typer.Exit(1)


def _open(config: Path | None, store: Path | None) -> KeyStore:
    from mixroute.config import load_config
    from mixroute.state.keys import open_key_store

    try:
        if store is not None:
            return KeyStore(store)
        return open_key_store(load_config(config))
    except ConfigError as exc:
        raise _unreachable(exc) from None


def _warn_unknown_routes(config: Path | None, routes: tuple[str, ...]) -> None:
    if not routes:
        return
    from mixroute.config import load_config

    try:
        known = load_config(config).route_names
    except ConfigError:
        return
    unknown = [r for r in routes if r not in known]
    if unknown:
        typer.echo(
            f"warning: route(s) {', '.join(unknown)} are not in the config "
            f"(routes: {', '.join(known)}); the key cannot use them",
            err=True,
        )


def _describe(k: ClientKey) -> dict[str, object]:
    return {
        "id": k.key_id,
        "name": k.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(k.created_at)),
        "revoked": k.revoked_at is not None,
        "budget_usd": k.budget_usd,
        "budget_period": k.budget_period,
        "routes": list(k.routes),
        "rpm": k.rpm,
        "tpm": k.tpm,
    }


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A unique name, e.g. team-a.")],
    budget_usd: Annotated[
        str | None, typer.Option("--budget-usd", help="Spend cap, e.g. 50/day.")
    ] = None,
    routes: Annotated[
        str | None, typer.Option(help="Comma-separated routes the key may use.")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Create a key and print it once; it cannot be shown again."""
    route_list = tuple(r.strip() for r in (routes or "").split(",") if r.strip())
    _warn_unknown_routes(config, route_list)
    keys = _open(config, store)
    try:
        key, record = keys.create(
            name, budget=budget_usd, routes=route_list, rpm=rpm, tpm=tpm
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ConfigError as exc:
        raise _unreachable(exc) from None
    finally:
        keys.close()
    typer.echo(key)
    typer.echo(
        f'created key "{record.name}" (id {record.key_id}); store it now, it will '
        "not be shown again",
        err=True,
    )


@keys_app.command("list")
def list_(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    revoked: Annotated[bool, typer.Option(help="Include revoked keys.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys (ids and limits, never secrets)."""
    keys = _open(config, store)
    try:
        rows = [_describe(k) for k in keys.list(include_revoked=revoked)]
    except ConfigError as exc:
        raise _unreachable(exc) from None
    finally:
        keys.close()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no keys")
        return
    for r in rows:
        budget = f"{r['budget_usd']}/{r['budget_period']}" if r["budget_usd"] else "-"
        routes = ",".join(r["routes"]) or "all"  # type: ignore[arg-type]
        state = " REVOKED" if r["revoked"] else ""
        typer.echo(
            f"{r['id']}  {r['name']}  created {r['created']}  budget {budget}  "
            f"routes {routes}  rpm {r['rpm'] or '-'}  tpm {r['tpm'] or '-'}{state}"
        )


@keys_app.command("revoke")
def revoke(
    name_or_id: Annotated[str, typer.Argument(help="The key's name or id.")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Revoke a key; servers stop accepting it within auth.cache_ttl_s seconds."""
    keys = _open(config, store)
    try:
        record = keys.revoke(name_or_id)
    except ConfigError as exc:
        raise _unreachable(exc) from None
    finally:
        keys.close()
    if record is None:
        typer.echo(f'error: no active key named or with id "{name_or_id}"', err=True)
        raise typer.Exit(1)
    typer.echo(f'revoked key "{record.name}" (id {record.key_id})')
