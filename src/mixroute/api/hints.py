"""What to set when a model has no upstream: names taken from the raw config.

The loader expands ``${VAR}`` references, so the validated config no longer
says where a ``base_url`` was meant to come from; the raw YAML text does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from mixroute.config.schema import MixrouteConfig, ModelConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


class UpstreamHints:
    """Model name → the environment variables its endpoint and key come from."""

    def __init__(self, config: MixrouteConfig, text: str | None) -> None:
        raw_models: list[Any] = []
        if text:
            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError:
                raw = None
            if isinstance(raw, dict) and isinstance(raw.get("models"), list):
                raw_models = raw["models"]
        self.names: dict[str, list[str]] = {}
        self.keys: dict[str, str] = {}
        for m in config.models:
            names: list[str] = []
            for r in raw_models:
                if isinstance(r, dict) and r.get("name") == m.name:
                    names += _ENV_REF.findall(str(r.get("base_url") or ""))
            if names:
                self.names[m.name] = names
            if m.api_key_env:
                self.keys[m.name] = m.api_key_env

    def sentence(self, models: Sequence[ModelConfig]) -> str:
        """One sentence telling the user what to set for ``models``."""
        names: list[str] = []
        keys: list[str] = []
        for m in models:
            names += self.names.get(m.name, [])
            if m.name in self.keys:
                keys.append(self.keys[m.name])
        if not names:
            return "Set base_url for " + ", ".join(m.name for m in models) + "."
        out = "Set " + ", ".join(dict.fromkeys(names))
        if keys:
            # Local servers (Ollama, vLLM) usually take no key.
            out += " (and " + ", ".join(dict.fromkeys(keys)) + " where the endpoint"
            out += " needs a key)"
        return out + " and restart mixroute."
