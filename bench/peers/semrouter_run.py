"""Runs inside ``.bench-venv/semrouter``: semantic-router and a scikit-learn
TF-IDF + logistic-regression baseline over the routing holdout.

Not imported by mixroute's venv (it needs only numpy, onnxruntime, tokenizers,
semantic-router and scikit-learn). Called by bench/peers/semrouter.py as
``python semrouter_run.py SPEC.json OUT.json``; the spec names the routes and
their utterances, the ONNX model and tokenizer files, the dev and holdout
files. Writes one prediction, confidence and latency per holdout row.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
from pydantic import PrivateAttr
from semantic_router import IndexedRouter, Route
from semantic_router.encoders import DenseEncoder


class MiniLMOnnxEncoder(DenseEncoder):  # type: ignore[misc]
    """mixroute's encoder (all-MiniLM-L6-v2 int8 ONNX, mean pooling, unit norm,
    one thread, 256 tokens) as a semantic-router dense encoder, so both routers
    see the very same vectors."""

    name: str = "all-MiniLM-L6-v2-onnx-int8"
    type: str = "local"
    _session: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()
    _lock: Any = PrivateAttr()
    _inputs: set[str] = PrivateAttr()

    def __init__(self, model: str, tokenizer: str, max_tokens: int = 256) -> None:
        super().__init__()
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            model, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(tokenizer)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._lock = threading.Lock()
        self._inputs = {i.name for i in self._session.get_inputs()}

    def __call__(self, docs: list[Any]) -> list[list[float]]:
        texts = [str(d) for d in docs]
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        w = mask[:, :, None].astype(np.float32)
        pooled = (hidden * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1.0)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32).tolist()


def _rows(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def _semantic_router(spec: dict[str, Any], prompts: list[str]) -> dict[str, Any]:
    encoder = MiniLMOnnxEncoder(spec["model"], spec["tokenizer"])
    t0 = time.perf_counter()
    routes = [Route(name=n, utterances=u) for n, u in spec["routes"].items()]
    router = IndexedRouter(encoder=encoder, routes=routes)
    build_s = time.perf_counter() - t0
    router("warm-up")
    pred, conf, times = [], [], []
    pair_router, pair_encoder = [], []
    for i, p in enumerate(prompts):
        t = time.perf_counter()
        choice = router(p)
        times.append((time.perf_counter() - t) * 1000)
        pred.append(choice.name)
        conf.append(float(choice.confidence or 0.0))
        if i % 5 == 0:
            # The encoder alone on the same prompt, right after: how much of a
            # call is the encoder and how much the library's routing path.
            t = time.perf_counter()
            encoder([p])
            pair_encoder.append((time.perf_counter() - t) * 1000)
            pair_router.append(times[-1])
    return {
        "pred": pred,
        "confidence": conf,
        "ms": times,
        "build_s": build_s,
        "pair_router_ms": pair_router,
        "pair_encoder_ms": pair_encoder,
    }


def _tfidf_lr(dev: list[dict[str, Any]], prompts: list[str]) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    model = make_pipeline(
        FeatureUnion(
            [
                (
                    "word",
                    TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                ),
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=(2, 4),
                        min_df=2,
                        sublinear_tf=True,
                    ),
                ),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    t0 = time.perf_counter()
    model.fit([r["prompt"] for r in dev], [r["category"] for r in dev])
    print(f"  fit on dev: {time.perf_counter() - t0:.1f} s", flush=True)
    model.predict(["warm-up"])
    pred, conf, times = [], [], []
    for p in prompts:
        t = time.perf_counter()
        proba = model.predict_proba([p])[0]
        times.append((time.perf_counter() - t) * 1000)
        k = int(proba.argmax())
        pred.append(str(model.classes_[k]))
        conf.append(float(proba[k]))
    return {"pred": pred, "confidence": conf, "ms": times}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    prompts = [str(r["prompt"]) for r in _rows(spec["holdout"])]
    t0 = time.perf_counter()
    out: dict[str, Any] = {"semantic_router": _semantic_router(spec, prompts)}
    print(f"semantic-router: {time.perf_counter() - t0:.1f} s", flush=True)
    if spec.get("dev") and Path(spec["dev"]).exists():
        t0 = time.perf_counter()
        out["sklearn_tfidf_lr"] = _tfidf_lr(_rows(spec["dev"]), prompts)
        print(f"scikit-learn TF-IDF + LR: {time.perf_counter() - t0:.1f} s", flush=True)
    Path(sys.argv[2]).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
