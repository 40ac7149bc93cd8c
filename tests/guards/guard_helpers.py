"""Guard test helpers: one cloud model behind the guards, PII redacted and
restored, auth off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mixroute.config import parse_config
from mixroute.config.schema import MixrouteConfig

UTTERANCE = {"code": "python", "chat": "hello"}


def cloud_config(
    ledger: Path, url: str, routes: tuple[str, ...] = ("code", "chat"), **server: Any
) -> MixrouteConfig:
    """The model ``cloud`` at ``url`` on ``routes``; ``server`` settings added."""
    raw = {
        "version": 1,
        "models": [{"name": "cloud", "base_url": url, "max_retries": 0}],
        "routes": [
            {"name": r, "candidates": ["cloud"], "utterances": [UTTERANCE[r]]}
            for r in routes
        ],
        "classifier": {"backend": "tfidf", "head": None},
        "policies": {"default_model": "cloud"},
        "server": {"ledger_path": str(ledger), **server},
        "guards": {"pii": "redact", "restore_pii": True},
        "auth": {"mode": "off"},
    }
    return parse_config(yaml.safe_dump(raw), env={})
