"""Helpers shared by the classifier tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixroute.config.schema import MixrouteConfig

DATA = Path(__file__).parent / "data"


def with_classifier(config: MixrouteConfig, **changes: Any) -> MixrouteConfig:
    """``config`` with ``classifier`` fields replaced."""
    classifier = config.classifier.model_copy(update=changes)
    return config.model_copy(update={"classifier": classifier})
