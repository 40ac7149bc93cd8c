"""Keys, rate limits and budgets shared by replicas through one real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mixroute.cli import app
from mixroute.config import default_config_text, parse_config
from mixroute.errors import ClientError
from mixroute.guards.auth import Authenticator
from mixroute.guards.ratelimit import BudgetGuard, RateLimiter
from mixroute.state.keys import RedisKeyStore, open_key_store
from mixroute.state.redis import RedisStore
from redis_server import RedisServer, unique_prefix

runner = CliRunner()


def _config(url: str, prefix: str) -> Any:
    raw = yaml.safe_load(default_config_text())
    raw["auth"] = {"backend": "redis", "cache_ttl_s": 0}
    raw["state"] = {"backend": "redis", "redis_url": url, "key_prefix": prefix}
    return parse_config(yaml.safe_dump(raw), env={})


async def test_a_key_made_on_one_replica_works_on_another(
    redis_server: RedisServer,
) -> None:
    config = _config(redis_server.url, unique_prefix())
    one, two = open_key_store(config), open_key_store(config)
    assert isinstance(one, RedisKeyStore)
    key, record = one.create("team-a", budget="5/day", routes=("code",), rpm=3)
    assert two.verify(key) == record
    assert two.verify(key[:-1] + "x") is None
    assert [k.name for k in two.list()] == ["team-a"]

    auth = Authenticator(two, mode="auto", cache_ttl_s=0)
    assert await auth.authenticate(f"Bearer {key}") == record
    one.revoke("team-a")
    with pytest.raises(ClientError):
        await auth.authenticate(f"Bearer {key}")
    assert two.list() == [] and len(two.list(include_revoked=True)) == 1
    # Nothing secret is stored: the key's random part is nowhere in Redis.
    for name in one.client.keys(f"{one.prefix}*"):
        if one.client.type(name) == b"hash":
            values = one.client.hvals(name)
            assert all(key[11:].encode() not in v for v in values)
    one.close()
    two.close()


async def test_rate_limits_and_budgets_are_shared(redis_server: RedisServer) -> None:
    prefix = unique_prefix()
    stores = [RedisStore.from_url(redis_server.url, prefix=prefix) for _ in range(2)]
    try:
        config = _config(redis_server.url, prefix)
        _, record = open_key_store(config).create("team-b", rpm=2, budget="1/day")
        limiters = [RateLimiter(s) for s in stores]
        await limiters[0].admit(record)
        await limiters[1].admit(record)
        with pytest.raises(ClientError) as info:
            await limiters[0].admit(record)
        assert info.value.status == 429

        budgets = [BudgetGuard(s) for s in stores]
        await budgets[0].record(record, 0.7)
        await budgets[1].record(record, 0.4)
        with pytest.raises(ClientError, match="budget"):
            await budgets[0].check(record)
    finally:
        for s in stores:
            await s.close()


def test_cli_uses_the_configured_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    raw = yaml.safe_load(default_config_text())
    raw["auth"] = {"backend": "redis"}
    raw["state"] = {
        "backend": "redis",
        "redis_url": redis_server.url,
        "key_prefix": prefix,
    }
    path = tmp_path / "mixroute.yaml"
    path.write_text(yaml.safe_dump(raw))
    made = runner.invoke(app, ["keys", "create", "--name", "ops", "-c", str(path)])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    listed = runner.invoke(app, ["keys", "list", "-c", str(path)])
    assert "ops" in listed.stdout and key[11:] not in listed.stdout
    assert open_key_store(_config(redis_server.url, prefix)).verify(key) is not None
    gone = runner.invoke(app, ["keys", "revoke", "ops", "-c", str(path)])
    assert gone.exit_code == 0


async def test_an_unreachable_key_store_fails_closed_with_a_503() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    store = RedisKeyStore.from_url(f"redis://127.0.0.1:{port}/0")
    auth = Authenticator(store, mode="auto")
    with pytest.raises(ClientError) as info:
        await auth.authenticate("Bearer mr-" + "a" * 43)
    assert info.value.status == 503 and info.value.code == "auth_unavailable"
    store.close()
