"""Configuration: schema, loading, the embedded default."""

from mixroute.config.loader import (
    check_references,
    default_config_text,
    load_config,
    parse_config,
)
from mixroute.config.schema import (
    ClassifierConfig,
    MixrouteConfig,
    ModelConfig,
    RouteConfig,
)

__all__ = [
    "ClassifierConfig",
    "MixrouteConfig",
    "ModelConfig",
    "RouteConfig",
    "check_references",
    "default_config_text",
    "load_config",
    "parse_config",
]
