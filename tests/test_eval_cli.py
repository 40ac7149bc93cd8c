"""``mixroute route``, ``eval`` and ``train`` through the real CLI (typer's runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mixroute.cli import app
from mixroute.config import default_config_text

runner = CliRunner()

ROWS = [
    {
        "id": "a",
        "prompt": "Write a Python function that reverses a string.",
        "category": "code",
        "source": "mt_bench",
    },
    {
        "id": "b",
        "prompt": "What is 17 times 23? Show the steps.",
        "category": "math",
        "source": "gsm8k",
    },
    {
        "id": "c",
        "prompt": "Write a poem about the moon over the harbour.",
        "category": "creative",
        "source": "arena_hard_v2",
    },
    {
        "id": "d",
        "prompt": "who painted the mona lisa",
        "category": "open_qa",
        "source": "nq_open",
    },
    {
        "id": "e",
        "prompt": "Summarize this article in one sentence: The city opened a library.",
        "category": "summarization",
    },
]


def _config(tmp_path: Path, **classifier: object) -> Path:
    data = yaml.safe_load(default_config_text())
    data["classifier"].update(
        {"backend": "tfidf", "cache_dir": str(tmp_path / "cache")}
    )
    data["classifier"].update(classifier)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_route_json(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["route", "Write a haiku about rain", "--json", "-c", str(_config(tmp_path))],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["route"] == "creative"
    assert out["backend"] == "tfidf"
    assert 0 <= out["confidence"] <= 1
    assert out["tier"] in ("simple", "medium", "complex")
    assert out["rule"].split(":")[0] in ("route", "default")


def test_eval_json_and_predictions(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "rows.jsonl", ROWS)
    preds = tmp_path / "preds.jsonl"
    result = runner.invoke(
        app,
        [
            "eval",
            str(data),
            "--json",
            "--predictions",
            str(preds),
            "-c",
            str(_config(tmp_path)),
        ],
    )
    assert result.exit_code == 0, result.output
    m = json.loads(result.output)
    for key in (
        "accuracy",
        "macro_f1",
        "per_category",
        "per_source",
        "ece",
        "latency_ms",
        "real_chat_accuracy",
    ):
        assert key in m
    assert m["accuracy"] >= 0.8
    assert set(m["latency_ms"]) >= {"p50", "p99"}
    assert m["per_source"]["unknown"]["n"] == 1
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b", "c", "d", "e"]
    assert set(lines[0]) == {"id", "category", "confidence", "tier", "hard_probability"}


def test_eval_human_report(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "rows.jsonl", ROWS)
    result = runner.invoke(app, ["eval", str(data), "-c", str(_config(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and "confusion" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"prompt": "x", "category": "code"}\n{broken\n',
            "rows.jsonl:2: not valid JSON",
        ),
        ('{"prompt": "x"}\n', "no string field 'category'"),
        ("", "has no rows"),
        ("[1, 2]\n", "expected a JSON object"),
    ],
)
def test_eval_bad_rows_are_clear_errors(
    tmp_path: Path, content: str, message: str
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(content)
    result = runner.invoke(app, ["eval", str(data), "-c", str(_config(tmp_path))])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_eval_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["eval", str(tmp_path / "nope.jsonl"), "-c", str(_config(tmp_path))]
    )
    assert result.exit_code == 1
    assert "cannot read" in result.output


def test_train_then_load_the_artifact(tmp_path: Path) -> None:
    rows = []
    for i in range(8):
        rows.append(
            {
                "prompt": f"Write a Go program number {i} that serves HTTP.",
                "category": "code",
            }
        )
        rows.append(
            {
                "prompt": f"Compute {i} + {i * 7} and then square the result.",
                "category": "math",
            }
        )
        rows.append(
            {
                "prompt": f"Write a limerick about a cat named {i}.",
                "category": "creative",
            }
        )
    data = _jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "head.npz"
    result = runner.invoke(
        app, ["train", str(data), "--out", str(out), "-c", str(_config(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and Path(str(out) + ".json").exists()
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert "code" in meta["classes"] and "brainstorming" in meta["classes"]
    assert meta["sha256"]

    config = _config(tmp_path, head=str(out))
    routed = runner.invoke(
        app,
        ["route", "Write a Go program that serves files", "--json", "-c", str(config)],
    )
    assert routed.exit_code == 0, routed.output
    assert json.loads(routed.output)["route"] == "code"


def test_train_rejects_unknown_categories(tmp_path: Path) -> None:
    data = _jsonl(
        tmp_path / "train.jsonl",
        [{"prompt": "p", "category": "astrology"}, {"prompt": "q", "category": "code"}],
    )
    result = runner.invoke(
        app,
        [
            "train",
            str(data),
            "--out",
            str(tmp_path / "h.npz"),
            "-c",
            str(_config(tmp_path)),
        ],
    )
    assert result.exit_code == 1
    assert "astrology" in result.output and "not routes in the config" in result.output


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    import numpy as np

    rows = [{"prompt": f"Write a Go program {i}", "category": "code"} for i in range(4)]
    rows += [{"prompt": f"Compute {i} + 2", "category": "math"} for i in range(4)]
    data = _jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "head.npz"
    assert (
        runner.invoke(
            app, ["train", str(data), "--out", str(out), "-c", str(_config(tmp_path))]
        ).exit_code
        == 0
    )
    with np.load(out) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["b_text"] = arrays["b_text"] + 1
    np.savez(out, **arrays)
    result = runner.invoke(
        app, ["route", "hello", "-c", str(_config(tmp_path, head=str(out)))]
    )
    assert result.exit_code != 0
    assert "SHA-256" in (result.output + str(result.exception))


def test_route_in_a_fresh_process_exits_cleanly_on_onnx() -> None:
    """Exiting while the encoder still loads in the background must not abort."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "mixroute.cli", "route", "hi", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    decision = json.loads(out.stdout)
    assert decision["model"] in {"small", "medium", "large"}
    assert decision["backend"] == "onnx"

    empty = subprocess.run(
        [sys.executable, "-m", "mixroute.cli", "route", "", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert empty.returncode == 1
    assert "the prompt is empty" in empty.stderr
    assert "Traceback" not in empty.stderr
