"""The state: and cache: config sections: defaults, parsing, secrets refused."""

from __future__ import annotations

import pytest

from mixroute.config.loader import default_config_text, load_config, parse_config
from mixroute.errors import ConfigError


def test_defaults_keep_the_embedded_config_valid() -> None:
    config = load_config()
    assert config.state.backend == "memory"
    assert config.cache.enabled is False
    assert config.cache.similarity == 0.95


def test_sections_parse_from_yaml() -> None:
    text = default_config_text() + (
        "\nstate:\n  backend: redis\n  redis_url: redis://10.0.0.5:6379/2\n"
        "  key_prefix: 'prod:'\n"
        "cache:\n  enabled: true\n  ttl_s: 60\n"
        "  route_similarity: {math: null, code: 0.99}\n"
    )
    config = parse_config(text, env={})
    assert config.state.backend == "redis"
    assert config.state.key_prefix == "prod:"
    assert config.cache.route_similarity == {"math": None, "code": 0.99}


def test_a_password_in_the_redis_url_is_refused() -> None:
    text = default_config_text() + (
        "\nstate:\n  backend: redis\n  redis_url: redis://:hunter2@10.0.0.5:6379/0\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    message = str(caught.value)
    assert "state: redis_url holds a password" in message
    assert "MIXROUTE_REDIS_URL" in message
    assert "hunter2" not in message


def test_unknown_keys_are_errors() -> None:
    text = default_config_text() + "\ncache:\n  enabeld: true\n"
    with pytest.raises(ConfigError, match="enabeld"):
        parse_config(text, env={})
