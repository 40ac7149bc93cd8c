"""Load, expand and validate a config file, collecting every problem as a sentence."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mixroute.config.policies import check_policy_references
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ConfigError
from mixroute.guards.checks import check_guard_references

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_EXPANDED_MODEL_FIELDS = ("base_url", "model", "api_version")
_SECRET_KEYS = {"api_key", "key", "secret", "token", "password", "authorization"}


def default_config_text() -> str:
    """The YAML of the embedded default config, packaged with the code."""
    return (resources.files("mixroute.config") / "default.yaml").read_text("utf-8")


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> MixrouteConfig:
    """Load ``path`` (or the embedded default) and return a validated config.

    Raises ``ConfigError`` whose ``problems`` name every fault with its path.
    """
    if path is None:
        return parse_config(default_config_text(), source="<embedded default>", env=env)
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: the file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: the file cannot be read ({exc})"]) from None
    return parse_config(text, source=str(p), env=env)


def parse_config(
    text: str, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> MixrouteConfig:
    env = os.environ if env is None else env
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(
            [f"{source}: the YAML cannot be parsed{where}: {problem}"]
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of sections"])

    problems = _find_secrets(raw)
    raw = _expand_env(raw, env)
    try:
        config = MixrouteConfig.model_validate(raw)
    except ValidationError as exc:
        problems += [_describe(err, raw) for err in exc.errors()]
        problems += [p for p in _raw_reference_problems(raw) if p not in problems]
        raise ConfigError(problems) from None
    problems += check_references(config)
    if problems:
        raise ConfigError(problems)
    return config


def check_references(config: MixrouteConfig) -> list[str]:
    """Cross-field checks pydantic cannot express: every name must resolve."""
    problems: list[str] = []
    models = set(config.model_names)

    def need_model(path: str, name: str) -> None:
        if name not in models:
            problems.append(
                f'{path}: model "{name}" is not defined in models '
                f"(defined: {', '.join(sorted(models))})"
            )

    seen_routes: set[str] = set()
    for i, route in enumerate(config.routes):
        if route.name in seen_routes:
            problems.append(f'routes[{i}].name: route "{route.name}" is defined twice')
        seen_routes.add(route.name)
        for j, cand in enumerate(route.candidates):
            need_model(f"routes[{i}].candidates[{j}]", cand)
        if route.safe_fallback is not None:
            need_model(f"routes[{i}].safe_fallback", route.safe_fallback)
        for tier, names in route.tiers.items():
            for j, cand in enumerate(names):
                need_model(f"routes[{i}].tiers.{tier}[{j}]", cand)
        blank = [j for j, u in enumerate(route.utterances) if not u.strip()]
        for j in blank:
            problems.append(f"routes[{i}].utterances[{j}]: an utterance is empty")

    need_model("policies.default_model", config.policies.default_model)
    for src, chain in config.policies.fallbacks.items():
        need_model(f"policies.fallbacks.{src}", src)
        for j, name in enumerate(chain):
            need_model(f"policies.fallbacks.{src}[{j}]", name)
    cycle = find_fallback_cycle(config.policies.fallbacks)
    if cycle:
        problems.append(
            "policies.fallbacks: the fallback chains form a cycle "
            f"({' → '.join(cycle)}); a model's fallbacks are followed "
            "transitively, so each chain must end"
        )

    head = config.classifier.head
    if head is None and not any(r.utterances for r in config.routes):
        problems.append(
            "classifier.head: with no trained head, routes need utterances, "
            "and none has any"
        )
    if head not in (None, "builtin") and not Path(os.path.expanduser(head)).exists():
        problems.append(f'classifier.head: the file "{head}" does not exist')
    problems += check_policy_references(config)
    problems += check_guard_references(config)
    return problems


def find_fallback_cycle(fallbacks: Mapping[str, list[str]]) -> list[str]:
    """A cycle in the fallback graph as a path (first == last), or []."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in fallbacks.get(node, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for start in fallbacks:
        if start not in state:
            found = visit(start)
            if found:
                return found
    return []


def _raw_reference_problems(raw: dict[str, Any]) -> list[str]:
    """Model references checked on the raw mapping, so a file with shape errors
    still hears about its undefined models in the same run."""
    models = raw.get("models")
    if not isinstance(models, list):
        return []
    names = {m.get("name") for m in models if isinstance(m, dict)}
    defined = ", ".join(sorted(n for n in names if isinstance(n, str)))
    problems: list[str] = []

    def need(path: str, name: Any) -> None:
        if isinstance(name, str) and name not in names:
            problems.append(
                f'{path}: model "{name}" is not defined in models (defined: {defined})'
            )

    routes = raw.get("routes")
    for i, route in enumerate(routes if isinstance(routes, list) else []):
        if not isinstance(route, dict):
            continue
        cands = route.get("candidates")
        for j, cand in enumerate(cands if isinstance(cands, list) else []):
            need(f"routes[{i}].candidates[{j}]", cand)
        need(f"routes[{i}].safe_fallback", route.get("safe_fallback"))
    policies = raw.get("policies")
    if isinstance(policies, dict):
        need("policies.default_model", policies.get("default_model"))
    return problems


def _find_secrets(raw: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    models = raw.get("models")
    if not isinstance(models, list):
        return problems
    for i, m in enumerate(models):
        if not isinstance(m, dict):
            continue
        for key in m:
            if isinstance(key, str) and key.lower() in _SECRET_KEYS:
                problems.append(
                    f"models[{i}].{key}: secrets are never written in the config; "
                    "put the key in an environment variable and name that variable "
                    "in api_key_env"
                )
    return problems


def _expand(value: str, env: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found:
            return found
        return default if default is not None else ""

    return _ENV_REF.sub(sub, value)


def _expand_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    models = raw.get("models")
    if not isinstance(models, list):
        return raw
    expanded = []
    for m in models:
        if isinstance(m, dict):
            m = dict(m)
            for field in _EXPANDED_MODEL_FIELDS:
                if isinstance(m.get(field), str):
                    m[field] = _expand(m[field], env) or None
            if isinstance(m.get("headers"), dict):
                m["headers"] = {
                    k: _expand(v, env) if isinstance(v, str) else v
                    for k, v in m["headers"].items()
                }
        expanded.append(m)
    return {**raw, "models": expanded}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _describe(err: Any, raw: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    path = _path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key (check the spelling; see `mixroute config show`)"
    if kind == "missing":
        return f"{path}: this key is required"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = err.get("input")
    if kind != "model_type" and isinstance(given, str | int | float | bool):
        return f"{path}: {msg} (got {given!r})"
    return f"{path}: {msg}"
