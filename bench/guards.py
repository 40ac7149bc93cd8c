"""Measure the guards: PII precision/recall and jailbreak precision/recall.

    .venv/bin/python bench/guards.py [--json]

PII is scored per entity on tests/guards/data/pii-labelled.jsonl (built by
bench/make_pii_set.py): a prediction is a true positive when its type and text
equal a labelled entity's. The jailbreak guard is scored on the held-out part
of tests/guards/data/jailbreak-labelled.jsonl (never used for training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/guards/data"
ROUTING_DEV = Path("/work/shared/eval/routing-dev.jsonl")


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def bench_pii(path: Path = DATA / "pii-labelled.jsonl") -> dict[str, object]:
    from mixroute.guards.pii import PiiDetector

    detector = PiiDetector()
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    clean_negatives = 0
    start = time.perf_counter()
    for row in rows:
        gold = Counter((e["type"], e["value"]) for e in row["entities"])
        pred = Counter((f.type, f.value) for f in detector.detect(row["text"]))
        for item, n in pred.items():
            hit = min(n, gold[item])
            tp[item[0]] += hit
            fp[item[0]] += n - hit
        for item, n in gold.items():
            fn[item[0]] += max(0, n - pred[item])
        if row["split"] == "hard_negative" and not pred:
            clean_negatives += 1
    elapsed = time.perf_counter() - start
    types = sorted(set(tp) | set(fp) | set(fn))
    negatives = sum(r["split"] == "hard_negative" for r in rows)
    return {
        "rows": len(rows),
        "overall": _prf(sum(tp.values()), sum(fp.values()), sum(fn.values())),
        "per_type": {
            t: _prf(tp[t], fp[t], fn[t]) | {"support": tp[t] + fn[t]} for t in types
        },
        "hard_negatives_clean": f"{clean_negatives}/{negatives}",
        "ms_per_row": round(1000 * elapsed / len(rows), 3),
    }


def bench_jailbreak(
    path: Path = DATA / "jailbreak-labelled.jsonl",
) -> dict[str, object] | None:
    if not path.exists():
        return None
    from mixroute.guards.jailbreak import JailbreakDetector

    rows = [json.loads(line) for line in path.read_text("utf-8").split("\n") if line]
    test = [r for r in rows if r["split"] == "test"]
    # The DEV routing prompts in the same test split serve as ordinary benign
    # traffic (read in place, as in training; never the holdout file).
    if ROUTING_DEV.exists():
        sys.path.insert(0, str(ROOT / "bench"))
        from train_jailbreak import split_of

        for line in ROUTING_DEV.read_text("utf-8").split("\n"):
            if line.strip():
                text = json.loads(line)["prompt"]
                if split_of(text) == "test":
                    test.append({"text": text, "label": 0, "source": "routing-dev"})
    detector = JailbreakDetector.load()
    out: dict[str, object] = {
        "rows_test": len(test),
        "attacks_test": sum(r["label"] == 1 for r in test),
    }
    verdicts = detector.score_many([r["text"] for r in test])
    for name, pick in (
        ("patterns", lambda v: v.pattern is not None),
        ("classifier", lambda v: v.probability >= detector.threshold),
        ("combined", lambda v: v.attack),
    ):
        tp = fp = fn = 0
        for row, v in zip(test, verdicts, strict=True):
            said, truth = pick(v), row["label"] == 1
            tp += said and truth
            fp += said and not truth
            fn += truth and not said
        out[name] = _prf(tp, fp, fn)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    report = {
        "pii": bench_pii(),
        "pii_handwritten": bench_pii(DATA / "pii-handwritten.jsonl"),
        "jailbreak": bench_jailbreak(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for label in ("pii", "pii_handwritten"):
        pii = report[label]
        print(f"{label} ({pii['rows']} rows, {pii['ms_per_row']} ms/row)")  # type: ignore[index]
        print(f"  overall {pii['overall']}")  # type: ignore[index]
        for t, m in pii["per_type"].items():  # type: ignore[index]
            print(f"  {t:12s} {m}")
        print(f"  hard negatives with no finding: {pii['hard_negatives_clean']}")  # type: ignore[index]
    jb = report["jailbreak"]
    if jb:
        print(
            f"Jailbreak (held-out {jb['rows_test']} rows, {jb['attacks_test']} attacks)"
        )
        for name in ("patterns", "classifier", "combined"):
            print(f"  {name:10s} {jb[name]}")


if __name__ == "__main__":
    main()
