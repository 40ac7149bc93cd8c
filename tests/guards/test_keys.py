"""Client keys: creation, hashing, verification, revocation, the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mixroute.cli import app
from mixroute.state.keys import KeyStore, key_id_of, parse_budget

runner = CliRunner()


def test_a_key_is_shown_once_and_only_its_salted_hash_is_stored(
    tmp_path: Path,
) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    key, record = store.create("team-a", budget="50/day", routes=("code",), rpm=600)
    assert key.startswith("mr-") and len(key) >= 3 + 32
    assert key_id_of(key) == record.key_id
    assert store.verify(key) == record
    assert record.budget_usd == 50.0 and record.budget_period == "day"
    assert record.routes == ("code",) and record.rpm == 600

    raw = (tmp_path / "keys.sqlite").read_bytes()
    assert key.encode() not in raw
    assert key[len("mr-") + 8 :].encode() not in raw
    store.create("team-b")
    db = sqlite3.connect(tmp_path / "keys.sqlite")
    salts = [bytes(r[0]) for r in db.execute("SELECT salt FROM client_keys")]
    db.close()
    assert len(set(salts)) == 2 and all(len(s) == 16 for s in salts)
    store.close()


def test_wrong_malformed_and_revoked_keys_do_not_verify(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    key, _ = store.create("team-a")
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert store.verify(tampered) is None
    assert store.verify("mr-short") is None
    assert store.verify("sk-" + key[3:]) is None
    assert store.verify("") is None

    assert store.revoke("team-a") is not None
    assert store.verify(key) is None
    assert store.revoke("team-a") is None
    # The name may be reused after a revoke; the old key stays dead.
    key2, _ = store.create("team-a")
    assert store.verify(key2) is not None and store.verify(key) is None
    assert store.revoke(store.find("team-a").key_id) is not None  # type: ignore[union-attr]
    store.close()


def test_names_and_budgets_are_validated(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    store.create("team-a")
    with pytest.raises(ValueError, match="already exists"):
        store.create("team-a")
    with pytest.raises(ValueError, match="key name"):
        store.create("bad name!")
    with pytest.raises(ValueError, match="budget"):
        store.create("team-c", budget="lots")
    with pytest.raises(ValueError, match="rpm"):
        store.create("team-d", rpm=0)
    assert parse_budget("50/day") == (50.0, "day")
    assert parse_budget("$7.5/month") == (7.5, "month")
    assert parse_budget("3") == (3.0, "day")
    with pytest.raises(ValueError):
        parse_budget("5/week")
    store.close()


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.sqlite")
    made = runner.invoke(
        app,
        [
            "keys", "create", "--name", "team-a", "--budget-usd", "50/day",
            "--routes", "code,math", "--rpm", "600", "--tpm", "90000",
            "--store", path,
        ],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[0]
    assert key.startswith("mr-")

    listed = runner.invoke(app, ["keys", "list", "--store", path, "--json"])
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert rows[0]["name"] == "team-a" and rows[0]["routes"] == ["code", "math"]
    assert rows[0]["rpm"] == 600 and rows[0]["tpm"] == 90000
    assert key not in listed.output and key[11:] not in listed.output
    human = runner.invoke(app, ["keys", "list", "--store", path])
    assert "team-a" in human.stdout and key[11:] not in human.stdout

    odd = runner.invoke(
        app, ["keys", "create", "--name", "t", "--routes", "nope", "--store", path]
    )
    assert (
        odd.exit_code == 0
        and "nope" in odd.stderr
        and "not in the config" in odd.stderr
    )

    dup = runner.invoke(app, ["keys", "create", "--name", "team-a", "--store", path])
    assert dup.exit_code == 1 and "already exists" in dup.output

    gone = runner.invoke(app, ["keys", "revoke", "team-a", "--store", path])
    assert gone.exit_code == 0 and "revoked" in gone.stdout
    again = runner.invoke(app, ["keys", "revoke", "team-a", "--store", path])
    assert again.exit_code == 1
    assert KeyStore(path).verify(key) is None
