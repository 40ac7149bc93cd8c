"""Shared fixtures: configs for both backends, classifiers built once."""

from __future__ import annotations

from pathlib import Path

import pytest
from classify_helpers import with_classifier

from mixroute.classify import build_classifier
from mixroute.classify.base import Classifier
from mixroute.config import load_config
from mixroute.config.schema import MixrouteConfig


@pytest.fixture(scope="session")
def default_config() -> MixrouteConfig:
    return load_config(None)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mixroute-cache")


@pytest.fixture(scope="session")
def tfidf_config(default_config: MixrouteConfig, cache_root: Path) -> MixrouteConfig:
    return with_classifier(default_config, backend="tfidf", cache_dir=str(cache_root))


@pytest.fixture(scope="session")
def tfidf(tfidf_config: MixrouteConfig) -> Classifier:
    return build_classifier(tfidf_config)


@pytest.fixture(scope="session")
def onnx(default_config: MixrouteConfig, cache_root: Path) -> Classifier:
    """The ONNX-backed classifier, loaded once for the whole session."""
    return build_classifier(
        with_classifier(default_config, backend="onnx", cache_dir=str(cache_root))
    )
