"""Config loading, validation messages and `mixroute config check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mixroute.cli import app
from mixroute.config import default_config_text, load_config, parse_config
from mixroute.errors import ConfigError

runner = CliRunner()


def _default() -> dict:
    return yaml.safe_load(default_config_text())


def _problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(raw), env={})
    return info.value.problems


def test_embedded_default_loads_without_a_file_or_environment() -> None:
    config = load_config(env={})
    assert {"math", "code", "creative", "open_qa"} <= set(config.route_names)
    assert config.policies.default_model == "large"
    # No environment: models exist but have no endpoint yet.
    assert all(not m.configured for m in config.models)


def test_environment_fills_endpoints_model_names_and_defaults() -> None:
    env = {
        "MIXROUTE_SMALL_BASE_URL": "http://127.0.0.1:9999/v1",
        "MIXROUTE_SMALL_MODEL": "llama3",
    }
    config = load_config(env=env)
    small = config.model("small")
    assert small.base_url == "http://127.0.0.1:9999/v1"
    assert small.upstream_model == "llama3"
    assert config.model("large").upstream_model == "gpt-4.1"  # ${VAR:-default}
    assert small.api_key_env == "MIXROUTE_SMALL_API_KEY"


def test_undefined_candidate_is_named_with_its_path() -> None:
    raw = _default()
    raw["routes"][3]["candidates"] = ["small", "gpt-5"]
    problems = _problems(raw)
    assert any(
        p.startswith('routes[3].candidates[1]: model "gpt-5" is not defined in models')
        for p in problems
    ), problems


def test_every_problem_is_reported_not_just_the_first() -> None:
    raw = _default()
    raw["routes"][0]["candidates"] = ["nope"]
    raw["policies"]["default_model"] = "missing"
    raw["classifier"]["thresholds"] = {"confident": 0.5, "safe": 0.8}
    raw["server"]["colour"] = "blue"
    text = "\n".join(_problems(raw))
    # Shape errors and undefined models are reported in the same run.
    assert "classifier.thresholds" in text
    assert "server.colour: unknown key" in text
    assert 'routes[0].candidates[0]: model "nope"' in text
    assert 'policies.default_model: model "missing"' in text


def test_unknown_keys_are_errors_at_any_depth() -> None:
    raw = _default()
    raw["models"][1]["price"]["input_per_token"] = 1.0
    problems = _problems(raw)
    assert any(
        p.startswith("models[1].price.input_per_token: unknown key") for p in problems
    )


def test_a_secret_in_the_file_is_refused_and_never_echoed() -> None:
    raw = _default()
    raw["models"][0]["api_key"] = "sk-canary-123456"
    problems = _problems(raw)
    assert any("models[0].api_key: secrets are never written" in p for p in problems)
    assert not any("sk-canary" in p for p in problems)


def test_fallback_cycle_is_a_config_error() -> None:
    raw = _default()
    raw["policies"]["fallbacks"] = {
        "small": ["medium"],
        "medium": ["large"],
        "large": ["small"],
    }
    problems = _problems(raw)
    assert any("cycle" in p and "policies.fallbacks" in p for p in problems)


def test_bad_types_and_ranges_name_the_value() -> None:
    raw = _default()
    raw["server"]["port"] = 70000
    raw["models"][0]["provider"] = "cohere"
    text = "\n".join(_problems(raw))
    assert "server.port" in text and "70000" in text
    assert "models[0].provider" in text and "cohere" in text


def test_duplicate_and_reserved_model_names() -> None:
    raw = _default()
    raw["models"].append(dict(raw["models"][0]))
    assert any("duplicated" in p for p in _problems(raw))
    raw = _default()
    raw["models"][0]["name"] = "auto"
    assert any("reserved" in p for p in _problems(raw))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("models: [\n  - name: x\n", "cannot be parsed at line"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("", "top level must be a mapping"),
    ],
)
def test_unparsable_files_get_a_sentence(
    tmp_path: Path, content: str, expected: str
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(content)
    result = runner.invoke(app, ["config", "check", str(f)])
    assert result.exit_code == 1
    assert expected in result.output
    assert "Traceback" not in result.output


def test_config_check_cli_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(default_config_text())
    ok = runner.invoke(app, ["config", "check", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output

    raw = _default()
    raw["routes"][3]["candidates"] = ["small", "gpt-5"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert (
        'routes[3].candidates[1]: model "gpt-5" is not defined in models'
        in result.output
    )

    missing = runner.invoke(app, ["config", "check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1
    assert "does not exist" in missing.output


def test_config_check_as_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\nmodels: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mixroute.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "version" in proc.stderr and "models" in proc.stderr
