"""Helpers for the policy tests: a small config, classifications, requests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import yaml

from mixroute.classify.base import Classification
from mixroute.config import parse_config
from mixroute.config.schema import MixrouteConfig
from mixroute.policy import PolicyRequest

BASE: dict[str, Any] = {
    "version": 1,
    "models": [
        {
            "name": "local",
            "local": True,
            "price": {"input_per_mtok": 0.0, "output_per_mtok": 0.0},
            "context_window": 4096,
            "max_output_tokens": 1024,
            "capabilities": ["chat"],
            "quality": 0.4,
        },
        {
            "name": "small",
            "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
            "capabilities": ["chat", "tools", "json", "vision"],
            "quality": 0.55,
        },
        {
            "name": "medium",
            "price": {"input_per_mtok": 0.40, "output_per_mtok": 1.60},
            "quality": 0.75,
        },
        {
            "name": "large",
            "price": {"input_per_mtok": 2.0, "output_per_mtok": 8.0},
            "capabilities": ["chat", "tools", "json", "vision"],
            "quality": 0.95,
        },
        {
            "name": "medium-next",
            "price": {"input_per_mtok": 0.30, "output_per_mtok": 1.20},
            "quality": 0.75,
        },
        {
            "name": "claude",
            "provider": "anthropic",
            "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
            "quality": 0.95,
        },
    ],
    "routes": [
        {"name": "math", "candidates": ["small", "medium", "large"]},
        {"name": "chat", "candidates": ["local", "small", "medium"]},
    ],
    "policies": {
        "default_model": "large",
        "feedback": {"path": ":memory:", "refresh_s": 0},
    },
}

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday


def make_config(**policies: Any) -> MixrouteConfig:
    """The base config with ``policies`` keys merged in (routes via ``routes``)."""
    raw = copy.deepcopy(BASE)
    routes = policies.pop("routes", None)
    if routes is not None:
        raw["routes"] = routes
    raw["policies"].update(policies)
    return parse_config(yaml.safe_dump(raw), env={})


def classified(
    route: str, confidence: float = 0.95, hard: float = 0.5
) -> Classification:
    return Classification(
        route=route, confidence=confidence, tier="medium", hard_probability=hard
    )


def req(**kw: Any) -> PolicyRequest:
    kw.setdefault("prompt_tokens", 100)
    kw.setdefault("max_tokens", 100)
    return PolicyRequest(**kw)
