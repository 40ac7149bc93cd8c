"""A body nested deeper than the json module reads but within orjson's 1024
levels is refused as the json module refuses it: 400 ``invalid_json``, "nested
too deeply" (not taken in by orjson and then failing to encode upstream)."""

from __future__ import annotations

import httpx
import pytest
from gateway_kit import build, make_config, serve, wait_rows

from fakes import FakeUpstream


@pytest.mark.parametrize("depth", [1000, 1020])
def test_nesting_within_orjson_limit_is_400_invalid_json(depth: int) -> None:
    with FakeUpstream("small") as up:
        app = build(*make_config({"small": up.base_url}))
        with serve(app) as s, httpx.Client(timeout=10) as c:
            deep = "[" * depth + "]" * depth
            body = (
                '{"model":"small","messages":[{"role":"user","content":"hi"}],'
                f'"metadata":{{"k":{deep}}}}}'
            )
            r = c.post(
                f"{s.base_url}/chat/completions",
                content=body.encode(),
                headers={"content-type": "application/json"},
            )
            rows = wait_rows(app, 1)
        assert not up.received
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_json"
    assert "nested too deeply" in err["message"]
    assert len(rows) == 1 and rows[0]["status"] == 400
