"""Provider adapters, found by the ``provider`` name in a model's config.

``"openai"`` and ``"azure"`` share the OpenAI-compatible adapter; ``"anthropic"``
is imported only when asked for, so the gateway runs without it.
"""

from __future__ import annotations

import importlib
from functools import cache

from mixroute.errors import ConfigError
from mixroute.providers.base import Provider

_LAZY: dict[str, tuple[str, str]] = {
    "anthropic": ("mixroute.providers.anthropic", "AnthropicProvider"),
}


@cache
def get_provider(name: str) -> Provider:
    """The adapter for provider ``name``; ``ConfigError`` if none can be loaded."""
    if name in ("openai", "azure"):
        from mixroute.providers.openai import OpenAIProvider

        return OpenAIProvider(azure=name == "azure")
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        try:
            module = importlib.import_module(module_name)
            provider: Provider = getattr(module, attr)()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                [f'provider "{name}": its adapter cannot be loaded ({exc})']
            ) from None
        return provider
    raise ConfigError(
        [f'provider "{name}" is unknown; accepted: openai, azure, anthropic']
    )


__all__ = ["Provider", "get_provider"]
