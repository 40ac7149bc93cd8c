"""The ONNX encoder backend, the model checksum, and the utterance cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from classify_helpers import with_classifier

from mixroute.classify import build_classifier
from mixroute.classify.base import Classifier
from mixroute.classify.encoder import DIM, verify_model
from mixroute.classify.index import cache_dir, cached_embeddings
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ConfigError


def test_onnx_classifies_and_embeds(onnx: Classifier) -> None:
    assert onnx.backend == "onnx"
    c = onnx.classify("Write a Rust function that reads a file line by line.")
    assert c.route == "code"
    assert c.backend == "onnx"
    vectors = np.asarray(
        onnx.embed(["a cat sat on the mat", "a kitten on a rug", "tax law"])
    )
    assert vectors.shape == (3, DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Paraphrases are closer than unrelated text.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_onnx_handles_odd_input(onnx: Classifier) -> None:
    for text in ["", "\x00\xff" * 500, "数学题：求 1+2+…+100 的和。", "x" * 300_000]:
        c = onnx.classify(text)
        assert c.route in onnx.routes
        assert 0.0 <= c.confidence <= 1.0


def test_onnx_is_thread_safe(onnx: Classifier) -> None:
    from concurrent.futures import ThreadPoolExecutor

    prompts = [f"Explain photosynthesis to a child, version {i}" for i in range(24)]
    with ThreadPoolExecutor(4) as pool:
        routes = list(pool.map(lambda p: onnx.classify(p).route, prompts))
    assert routes == [onnx.classify(p).route for p in prompts]


def test_model_with_wrong_sha_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the pinned model")
    with pytest.raises(ConfigError, match="SHA-256"):
        verify_model(fake)


def test_outside_route_on_onnx_uses_the_disk_cache(
    default_config: MixrouteConfig, tmp_path: Path
) -> None:
    extra = default_config.routes[0].model_copy(
        update={
            "name": "gardening",
            "utterances": [
                "When should I prune my apple trees?",
                "How often do I water tomato plants in summer?",
                "What is the best soil for growing blueberries?",
            ],
        }
    )
    config = with_classifier(
        default_config.model_copy(update={"routes": [*default_config.routes, extra]}),
        backend="onnx",
        cache_dir=str(tmp_path),
    )
    clf = build_classifier(config)
    assert (
        clf.classify(
            "How deep should I plant garlic cloves in my vegetable garden?"
        ).route
        == "gardening"
    )
    files = list(tmp_path.glob("utterances-*.npy"))
    assert len(files) == 1


def test_corrupt_or_unwritable_cache_is_survived(tmp_path: Path) -> None:
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.ones((2, 4), dtype=np.float32)

    first = cached_embeddings(tmp_path, "k", 2, compute)
    second = cached_embeddings(tmp_path, "k", 2, compute)
    assert len(calls) == 1 and np.array_equal(first, second)

    (tmp_path / "utterances-k.npy").write_bytes(b"garbage")
    assert cached_embeddings(tmp_path, "k", 2, compute).shape == (2, 4)
    assert len(calls) == 2

    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    assert cached_embeddings(blocked / "sub", "k", 2, compute).shape == (2, 4)


def test_cache_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir(None) == tmp_path / "mixroute"
    assert cache_dir(str(tmp_path / "x")) == tmp_path / "x"


def test_telemetry_is_disabled_before_onnxruntime_loads() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "os.environ.pop('ORT_DISABLE_TELEMETRY', None)\n"
        "import mixroute.classify.encoder\n"
        "assert 'onnxruntime' not in sys.modules, 'imported eagerly'\n"
        "print(os.environ['ORT_DISABLE_TELEMETRY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
