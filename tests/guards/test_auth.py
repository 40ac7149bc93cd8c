"""The authenticator: OpenAI-shaped 401s, auto mode, caching, revocation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixroute.errors import ClientError
from mixroute.guards.auth import Authenticator, check_route
from mixroute.state.keys import KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _refused(auth: Authenticator, header: str | None) -> ClientError:
    with pytest.raises(ClientError) as info:
        await auth.authenticate(header)
    return info.value


async def test_auto_mode_is_off_until_a_key_exists(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.sqlite")
    clock = Clock()
    auth = Authenticator(store, mode="auto", cache_ttl_s=5, clock=clock)
    assert await auth.authenticate(None) is None

    key, record = store.create("team-a")
    clock.now += 6
    err = await _refused(auth, None)
    assert err.status == 401
    assert err.body()["error"]["code"] == "invalid_api_key"
    assert (await auth.authenticate(f"Bearer {key}")) == record

    # Revoking the last key keeps auth on: the gateway must not fall open.
    store.revoke("team-a")
    clock.now += 6
    assert (await _refused(auth, f"Bearer {key}")).status == 401
    assert (await _refused(auth, None)).status == 401


async def test_off_mode_lets_everyone_in_and_on_mode_needs_a_key(
    tmp_path: Path,
) -> None:
    store = KeyStore(tmp_path / "k.sqlite")
    store.create("team-a")
    assert await Authenticator(store, mode="off").authenticate(None) is None
    assert (await _refused(Authenticator(store, mode="on"), "Bearer x")).status == 401
    empty = KeyStore(tmp_path / "empty.sqlite")
    assert (await _refused(Authenticator(empty, mode="on"), None)).status == 401


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Basic abc", "Bearer mr-nope", "mr-" + "a" * 43]
)
async def test_bad_headers_get_a_401_that_never_echoes_them(
    tmp_path: Path, header: str
) -> None:
    store = KeyStore(tmp_path / "k.sqlite")
    store.create("team-a")
    err = await _refused(Authenticator(store, mode="on"), header)
    assert err.status == 401 and err.type == "invalid_request_error"
    if header.startswith("Bearer "):
        assert header.split()[-1] not in err.message
    assert "www-authenticate" in err.headers


async def test_a_wrong_secret_for_a_real_key_id_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.sqlite")
    key, _ = store.create("team-a")
    auth = Authenticator(store, mode="on")
    forged = key[:11] + "x" * (len(key) - 11)
    assert (await _refused(auth, f"Bearer {forged}")).status == 401
    # A cached refusal is still a refusal.
    assert (await _refused(auth, f"Bearer {forged}")).status == 401


async def test_revocation_takes_effect_within_the_cache_ttl(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.sqlite")
    key, _ = store.create("team-a")
    clock = Clock()
    auth = Authenticator(store, mode="on", cache_ttl_s=5, clock=clock)
    assert await auth.authenticate(f"Bearer {key}") is not None

    # Another process revokes it (same file, separate connection).
    other = KeyStore(tmp_path / "k.sqlite")
    other.revoke("team-a")
    clock.now += 2
    assert await auth.authenticate(f"bearer {key}") is not None  # still cached
    clock.now += 4
    assert (await _refused(auth, f"Bearer {key}")).status == 401


async def test_routes_restrict_a_key(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.sqlite")
    _, record = store.create("team-a", routes=("code", "math"))
    check_route(record, "code")
    check_route(None, "anything")
    with pytest.raises(ClientError) as info:
        check_route(record, "creative")
    assert info.value.status == 403 and "creative" in info.value.message
