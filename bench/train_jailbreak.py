"""Train the jailbreak head shipped in src/mixroute/guards/data/jailbreak-head.npz.

    .venv/bin/python bench/train_jailbreak.py [--routing-dev PATH]

Data (documented in src/mixroute/guards/data/NOTICE):
- attacks: tests/guards/data/jailbreak-attacks.txt (written for mixroute, CC0);
- look-alike benign prompts: tests/guards/data/jailbreak-benign.txt (same);
- ordinary benign prompts: the DEV routing set (/work/shared/eval/routing-dev.jsonl,
  never the holdout), read here and not copied into the repository.

Every text goes to train or test by a hash of its text (30% test); the test
part is never used for fitting or for choosing the threshold, which is picked
by 5-fold cross-validation inside the training part. The script writes the
head, tests/guards/data/jailbreak-labelled.jsonl (our own texts with their
split) and prints the head's SHA-256 for ``HEAD_SHA256`` in jailbreak.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/guards/data"
HEAD = ROOT / "src/mixroute/guards/data/jailbreak-head.npz"
L2 = 1e-2


def split_of(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "test" if digest[0] % 10 < 3 else "train"


def read_lines(path: Path) -> list[str]:
    lines = path.read_text("utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.startswith("#")]


def fit(x: np.ndarray, y: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by Newton's method."""
    n, d = x.shape
    weight = np.where(y == 1, n / (2 * y.sum()), n / (2 * (n - y.sum())))
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2 * n)
    reg[-1] = 0.0
    for _ in range(30):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (weight * (p - y)) + reg * w
        hess = (xb * (weight * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-7:
            break
    return w[:-1], float(w[-1])


def prob(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x @ w + b, -40, 40)))


def pick_threshold(x: np.ndarray, y: np.ndarray) -> float:
    """The threshold with the best F0.5 (precision weighs more) over 5 folds."""
    folds = np.arange(len(y)) % 5
    scores = np.zeros(len(y))
    for k in range(5):
        w, b = fit(x[folds != k], y[folds != k])
        scores[folds == k] = prob(x[folds == k], w, b)
    best, best_t = -1.0, 0.5
    for t in np.arange(0.05, 0.96, 0.01):
        said = scores >= t
        tp = float((said & (y == 1)).sum())
        p = tp / max(said.sum(), 1)
        r = tp / max((y == 1).sum(), 1)
        f = 1.25 * p * r / (0.25 * p + r) if p + r else 0.0
        if f > best:
            best, best_t = f, float(t)
    return round(best_t, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--routing-dev", type=Path, default=Path("/work/shared/eval/routing-dev.jsonl")
    )
    args = parser.parse_args()
    if "holdout" in args.routing_dev.name:
        sys.exit("refusing to train on a holdout file")
    sys.path.insert(0, str(ROOT / "src"))
    from mixroute.classify.encoder import ENCODER_ID, OnnxEncoder
    from mixroute.guards.jailbreak import LinearHead

    attacks = read_lines(DATA / "jailbreak-attacks.txt")
    lookalikes = read_lines(DATA / "jailbreak-benign.txt")
    ordinary = [
        json.loads(line)["prompt"]
        for line in args.routing_dev.read_text("utf-8").split("\n")
        if line.strip()
    ]
    rows = [(t, 1, "attack") for t in attacks]
    rows += [(t, 0, "lookalike") for t in lookalikes]
    rows += [(t, 0, "routing-dev") for t in ordinary]

    encoder = OnnxEncoder(max_tokens=256, threads=2)
    texts = [t[:2000] for t, _, _ in rows]
    x = np.vstack([encoder.embed(texts[i : i + 32]) for i in range(0, len(texts), 32)])
    y = np.array([label for _, label, _ in rows], dtype=np.float64)
    test = np.array([split_of(t) == "test" for t, _, _ in rows])

    threshold = pick_threshold(x[~test], y[~test])
    w, b = fit(x[~test], y[~test])
    head = LinearHead(w.astype(np.float32), b, ENCODER_ID, threshold)
    HEAD.parent.mkdir(parents=True, exist_ok=True)
    data = head.to_bytes()
    HEAD.write_bytes(data)

    p = prob(x[test], w, b)
    said, truth = p >= threshold, y[test] == 1
    tp = float((said & truth).sum())
    print(
        f"train {int((~test).sum())} rows, test {int(test.sum())} rows; "
        f"threshold {threshold}; head-only test precision "
        f"{tp / max(said.sum(), 1):.3f} recall {tp / max(truth.sum(), 1):.3f}"
    )
    with (DATA / "jailbreak-labelled.jsonl").open("w", encoding="utf-8") as f:
        for text, label, source in rows:
            if source == "routing-dev":
                continue
            row = {"text": text, "label": label, "source": source}
            f.write(json.dumps(row | {"split": split_of(text)}, ensure_ascii=False))
            f.write("\n")
    print(f"wrote {HEAD} sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
