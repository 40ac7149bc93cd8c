"""Text → ``Classification``: route, calibrated confidence and complexity tier.

``build_classifier(config)`` is the entry point. The encoder and the head are
loaded once per process and shared (keyed by the settings that shape them), so
calling it again, e.g. on a config reload, is cheap.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
from typing import Any

from mixroute.classify.base import Classification, Classifier
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ConfigError

__all__ = ["Classification", "Classifier", "build_classifier", "encoder_for"]

log = logging.getLogger("mixroute.classify")

_lock = threading.RLock()
_encoders: dict[tuple[int, int], Any] = {}
_heads: dict[str, Any] = {}
_classifiers: dict[str, Classifier] = {}


def encoder_for(config: MixrouteConfig) -> Any | None:
    """The shared ONNX encoder for these settings, or None on the tfidf backend.

    ``backend: auto`` falls back to None with a WARNING when onnxruntime or the
    model cannot be loaded; ``backend: onnx`` raises ``ConfigError`` instead.
    A model file whose SHA-256 differs is an error on every backend but tfidf.
    """
    settings = config.classifier
    if settings.backend == "tfidf":
        return None
    key = (settings.max_tokens, settings.threads)
    with _lock:
        if key in _encoders:
            return _encoders[key]
        try:
            from mixroute.classify.encoder import (
                BackgroundEncoder,
                model_file,
                verify_model,
            )

            # What can fail for a reason the user must see is checked here, at
            # start-up; only building the session happens in the background.
            verify_model(model_file())
            import onnxruntime  # noqa: F401

            encoder = BackgroundEncoder(
                max_tokens=settings.max_tokens, threads=settings.threads
            )
        except ConfigError as exc:
            if settings.backend == "onnx" or "SHA-256" in str(exc):
                raise
            log.warning("ONNX encoder unavailable, using the tfidf backend: %s", exc)
            encoder = None
        except (ImportError, OSError, RuntimeError) as exc:
            if settings.backend == "onnx":
                raise ConfigError(
                    [f"classifier.backend: onnx cannot load the encoder ({exc})"]
                ) from None
            log.warning("onnxruntime unavailable, using the tfidf backend: %s", exc)
            encoder = None
        _encoders[key] = encoder
        return encoder


def _head_for(spec: str | None) -> Any | None:
    if spec is None:
        return None
    from mixroute.classify.head import load_head

    with _lock:
        if spec not in _heads:
            _heads[spec] = load_head(spec)
        return _heads[spec]


def _difficulty_scorer() -> Any | None:
    try:
        module = importlib.import_module("mixroute.classify.difficulty")
    except ImportError:
        return None
    except Exception as exc:  # a broken optional add-on must not stop start-up
        log.warning("difficulty scorer failed to import, using the heuristic: %s", exc)
        return None
    scorer_class = getattr(module, "DifficultyScorer", None)
    if scorer_class is None:
        return None
    try:
        return scorer_class.load_builtin()
    except Exception as exc:  # an optional add-on must not stop start-up
        log.warning(
            "trained difficulty scorer unavailable, using the heuristic: %s", exc
        )
        return None


def build_classifier(config: MixrouteConfig) -> Classifier:
    """The classifier for ``config``; the last one built is reused while the
    classifier settings and routes stay the same."""
    from mixroute.classify.classifier import RouterClassifier

    routes = [(r.name, tuple(r.utterances)) for r in config.routes]
    key = hashlib.sha256(
        (config.classifier.model_dump_json() + repr(routes)).encode()
    ).hexdigest()
    with _lock:
        cached = _classifiers.get(key)
        if cached is not None:
            return cached
        head = _head_for(config.classifier.head)
        encoder = encoder_for(config)
        if head is not None and encoder is not None:
            expected = head.meta.get("encoder_sha256")
            if head.has_joint and expected and expected != encoder.model_sha256:
                raise ConfigError(
                    [
                        f"classifier.head: trained with encoder {expected}, but the "
                        f"installed encoder is {encoder.model_sha256}; retrain it"
                    ]
                )
        classifier = RouterClassifier(
            config, head=head, encoder=encoder, difficulty=_difficulty_scorer()
        )
        # Only the latest is kept: each reload that edits the routes builds
        # one (tens of MB), and a replaced config's must go with its gateway.
        _classifiers.clear()
        _classifiers[key] = classifier
        return classifier
