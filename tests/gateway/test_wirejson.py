"""orjson on the request path decides nothing the json module would not."""

from __future__ import annotations

import json
import math

import pytest

from mixroute import wirejson
from mixroute.api.wire import parse_json
from mixroute.errors import ClientError

SAME = [
    b'{"lone": "\\ud800"}',  # json accepts it; parse_json refuses it later
    b'{"messages": [{"role": "user", "content": "h\\u00e9 \xe2\x82\xac"}]}',
    b'{"seed": 123456789012345678901234567890}',  # past 64 bits: stays an int
    b'{"seed": -9223372036854775809, "n": 1}',
    b'{"t": NaN, "u": Infinity}',  # orjson refuses, json accepts
    b'{"a": 1e400}',
    b'\xef\xbb\xbf{"bom": true}',
    b'{"pair": "\\ud83d\\ude00"}',  # a surrogate pair is one character
    b'  {"a": [1, 2.5, null, true]}  ',
]


@pytest.mark.parametrize("raw", SAME)
def test_loads_gives_what_json_gives(raw: bytes) -> None:
    got, want = wirejson.loads(raw), json.loads(raw)
    assert repr(got) == repr(want)
    assert type(got.get("seed")) is type(want.get("seed"))


@pytest.mark.parametrize("raw", [b'{"a": 1} x', b"[1,]", b"\xff", b'{"a":"x\ny"}'])
def test_loads_refuses_what_json_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        wirejson.loads(raw)


def test_parse_json_keeps_its_error_messages() -> None:
    with pytest.raises(ClientError) as lone:
        parse_json(b'{"messages": "\\ud800"}')
    assert lone.value.code == "invalid_encoding"
    with pytest.raises(ClientError) as bad:
        parse_json(b'{"a": 1,}')
    assert bad.value.code == "invalid_json"
    with pytest.raises(ClientError) as utf8:
        parse_json(b'{"a": "\xff"}')
    assert utf8.value.code == "invalid_encoding"
    assert parse_json(b'{"seed": 123456789012345678901234567890}') == {
        "seed": 123456789012345678901234567890
    }


def test_dumps_is_compact_utf8_and_falls_back_like_json() -> None:
    value = {"text": "h\u00e9 \u20ac", "n": [1, 2.5, None], 3: "int key"}
    assert json.loads(wirejson.dumps(value)) == json.loads(
        json.dumps(value, ensure_ascii=False)
    )
    assert wirejson.dumps({"a": "\u20ac"}) == '{"a":"\u20ac"}'.encode()
    with pytest.raises(UnicodeEncodeError):
        wirejson.dumps({"lone": "\ud800"})
    assert wirejson.dumps({"t": math.nan}) == b'{"t":null}'
