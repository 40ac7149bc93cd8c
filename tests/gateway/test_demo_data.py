"""The demo's shipped prompts: permissive licences only, attributed, no holdout."""

from __future__ import annotations

import re
from importlib import resources

from mixroute.demo import _answer, _fails, load_prompts

PERMISSIVE = {"MIT", "Apache-2.0", "CC-BY-4.0"}
LICENCE = re.compile(r"CC-BY-SA-\d\.\d|CC-BY-\d\.\d|Apache-2\.0|MIT")


def test_prompts_are_permissively_licensed_and_attributed() -> None:
    rows = load_prompts()
    assert 250 <= len(rows) <= 400
    notice = (resources.files("mixroute") / "demo_data" / "NOTICE").read_text()
    for row in rows:
        found = LICENCE.findall(row["license"])
        assert found and set(found) <= PERMISSIVE, row["id"]
        assert row["source"].split("_")[0] in notice or row["source"] in notice
        assert row["source"] not in ("bbh", "semantic_router")
    assert len({r["id"] for r in rows}) == len(rows)


def test_stand_in_answers_name_their_model_and_small_fails_sometimes() -> None:
    prompts = [r["prompt"] for r in load_prompts()]
    assert "[stand-in-medium]" in _answer("medium", prompts[0])
    failing = sum(_fails("small", p) for p in prompts) / len(prompts)
    assert 0.05 < failing < 0.4
    assert not any(_fails("large", p) for p in prompts)
