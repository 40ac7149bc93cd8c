"""The trained head: a calibrated linear model over TF-IDF (and optionally
encoder) features, saved as one ``.npz`` file that ``classifier.head`` names.

Two stages live in one artifact:

- ``text``: TF-IDF features only; always present; the whole classifier on
  the ``tfidf`` backend and the first stage on ``onnx``;
- ``joint``: TF-IDF plus the encoder's embedding of the first
  ``emb_tokens`` tokens; optional; the ONNX backend runs it only when the
  text stage's confidence is below ``cascade_below`` (the cascade).

Each stage has its own temperature, fitted on cross-validated logits, so its
probabilities are calibrated. The metadata (JSON inside the file and beside
it) records the classes, the encoder id, and a SHA-256 over the arrays that
``load_head`` checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mixroute.classify.linear import softmax
from mixroute.classify.tfidf import SparseRows, TfidfVectorizer
from mixroute.errors import ConfigError

FORMAT = "mixroute-head/1"


@dataclass(frozen=True)
class Head:
    """A loaded head artifact (see the module docstring)."""

    classes: tuple[str, ...]
    vectorizer: TfidfVectorizer
    w_text: np.ndarray
    b_text: np.ndarray
    t_text: float
    w_joint_text: np.ndarray | None = None
    w_joint_emb: np.ndarray | None = None
    b_joint: np.ndarray | None = None
    t_joint: float = 1.0
    emb_tokens: int = 48
    cascade_below: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_joint(self) -> bool:
        return self.w_joint_emb is not None

    def text_proba(self, x: SparseRows) -> np.ndarray:
        """Calibrated class probabilities from TF-IDF rows alone."""
        return softmax((x.dot(self.w_text) + self.b_text) / self.t_text)

    def joint_proba(self, x: SparseRows, emb: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities from TF-IDF rows plus embeddings."""
        assert self.w_joint_text is not None and self.w_joint_emb is not None
        assert self.b_joint is not None
        z = x.dot(self.w_joint_text) + emb @ self.w_joint_emb + self.b_joint
        return softmax(z / self.t_joint)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_head(head: Head, path: Path) -> dict[str, Any]:
    """Write ``head`` to ``path`` (npz) and ``path.json``; return the metadata."""
    arrays: dict[str, np.ndarray] = {
        # One UTF-8 blob, "\n"-separated (no n-gram holds a newline): loads far
        # faster than an array of fixed-width unicode strings.
        "vocab_utf8": np.frombuffer(
            "\n".join(head.vectorizer.grams).encode("utf-8"), dtype=np.uint8
        ),
        "idf": head.vectorizer.idf.astype(np.float32),
        "w_text": head.w_text.astype(np.float16),
        "b_text": head.b_text.astype(np.float32),
    }
    if head.has_joint:
        assert head.w_joint_text is not None and head.b_joint is not None
        assert head.w_joint_emb is not None
        arrays["w_joint_text"] = head.w_joint_text.astype(np.float16)
        arrays["w_joint_emb"] = head.w_joint_emb.astype(np.float32)
        arrays["b_joint"] = head.b_joint.astype(np.float32)
    meta = dict(head.meta)
    meta.update(
        format=FORMAT,
        classes=list(head.classes),
        t_text=head.t_text,
        t_joint=head.t_joint,
        emb_tokens=head.emb_tokens,
        cascade_below=head.cascade_below,
        n_features=head.vectorizer.n_features,
        sha256=_digest(arrays),
    )
    buf = io.BytesIO()
    arrays["meta"] = np.array(json.dumps(meta))
    # numpy types **kwds loosely enough that mypy matches them to allow_pickle.
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    Path(str(path) + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def builtin_head_path() -> Path:
    """The head trained on mixroute's dev set and shipped with the package."""
    return Path(str(resources.files("mixroute.classify") / "data" / "head.npz"))


def load_head(spec: str) -> Head:
    """Load ``'builtin'`` or a ``mixroute train`` artifact; ``ConfigError`` if bad."""
    path = builtin_head_path() if spec == "builtin" else Path(spec).expanduser()
    where = f"classifier.head: {path}"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ConfigError([f"{where} does not exist"]) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError([f"{where} is not a head artifact ({exc})"]) from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
        if _digest(arrays) != meta["sha256"]:
            raise ValueError("its arrays do not match the SHA-256 in its metadata")
        if "vocab_utf8" in arrays:
            grams = arrays["vocab_utf8"].tobytes().decode("utf-8").split("\n")
        else:
            grams = [str(g) for g in arrays["vocab"].tolist()]
        joint = "w_joint_emb" in arrays
        return Head(
            classes=tuple(meta["classes"]),
            vectorizer=TfidfVectorizer.from_grams(grams, arrays["idf"]),
            w_text=arrays["w_text"].astype(np.float32),
            b_text=arrays["b_text"],
            t_text=float(meta["t_text"]),
            w_joint_text=arrays["w_joint_text"].astype(np.float32) if joint else None,
            w_joint_emb=arrays["w_joint_emb"] if joint else None,
            b_joint=arrays["b_joint"] if joint else None,
            t_joint=float(meta.get("t_joint", 1.0)),
            emb_tokens=int(meta.get("emb_tokens", 48)),
            cascade_below=float(meta.get("cascade_below", 0.0)),
            meta=meta,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError([f"{where} is not a valid head artifact ({exc})"]) from None
