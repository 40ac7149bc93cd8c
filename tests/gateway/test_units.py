"""Pure parts: SSE framing, the circuit breaker, the OpenAI adapter, Retry-After."""

from __future__ import annotations

import json

import pytest
from gateway_kit import make_config

from mixroute.config import parse_config
from mixroute.config.schema import CircuitBreakerConfig, ModelConfig
from mixroute.errors import ConfigError, UpstreamProtocolError, UpstreamStatusError
from mixroute.providers import get_provider
from mixroute.providers.openai import OpenAIProvider
from mixroute.state.ledger import Ledger, UsageRow
from mixroute.upstream.breaker import CircuitBreaker
from mixroute.upstream.pool import _retry_after, is_client_fault
from mixroute.upstream.sse import SSEDecoder


def test_sse_survives_any_split_of_the_bytes() -> None:
    text = "héllo € 日本 ✓"
    wire = (
        ": keep-alive\r\n\r\n"
        f"data: {json.dumps({'t': text}, ensure_ascii=False)}\r\n\r\n"
        "event: ping\ndata: a\ndata: b\n\n"
        "data: [DONE]\n\n"
    ).encode()
    for cut in range(1, len(wire)):
        d = SSEDecoder()
        events = d.feed(wire[:cut]) + d.feed(wire[cut:]) + d.flush()
        assert events == [
            (None, json.dumps({"t": text}, ensure_ascii=False)),
            ("ping", "a\nb"),
            (None, "[DONE]"),
        ]


def test_sse_whole_events_and_line_by_line_agree_at_any_split() -> None:
    # Without carriage returns the decoder takes whole events at a time; the
    # unusual ones (comments, named events, several data lines, "data:" with
    # no space, an empty event) must come out as the line parser gives them.
    wire = (
        'data: {"a": "€"}\n\n'
        ": comment\n\n"
        "event: ping\ndata: x\n\n"
        "data: one\ndata: two\n\n"
        "data:tight\n\n"
        "\n\n"
        "data: \n\n"
        "data: [DONE]\n\n"
    ).encode()
    expected = [
        (None, '{"a": "€"}'),
        ("ping", "x"),
        (None, "one\ntwo"),
        (None, "tight"),
        (None, ""),
        (None, "[DONE]"),
    ]
    for cut in range(1, len(wire)):
        for second in (cut, min(len(wire), cut + 7)):
            d = SSEDecoder()
            parts = [wire[:cut], wire[cut:second], wire[second:]]
            events = [e for part in parts for e in d.feed(part)] + d.flush()
            assert events == expected, (cut, second)


def test_sse_byte_by_byte_and_unterminated_tail() -> None:
    d = SSEDecoder()
    events = []
    for b in b'data: {"x": "\xe2\x82\xac"}\n\ndata: tail':
        events += d.feed(bytes([b]))
    events += d.flush()
    assert events == [(None, '{"x": "€"}'), (None, "tail")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_cools_down_and_probes_once() -> None:
    clock = Clock()
    b = CircuitBreaker(
        CircuitBreakerConfig(failures=2, window_s=10, cooldown_s=5), clock
    )
    b.record_failure()
    assert b.allow() and b.state == "closed"
    b.record_failure()
    assert b.state == "open" and not b.allow()
    clock.now = 5.0
    assert b.state == "half_open"
    assert b.allow() and not b.allow()  # a single probe
    b.record_success()
    assert b.state == "closed" and b.allow()


def test_breaker_window_forgets_old_failures() -> None:
    clock = Clock()
    b = CircuitBreaker(
        CircuitBreakerConfig(failures=2, window_s=1, cooldown_s=5), clock
    )
    b.record_failure()
    clock.now = 2.0
    b.record_failure()
    assert b.state == "closed"


def test_breaker_cancelled_probe_is_given_back() -> None:
    clock = Clock()
    b = CircuitBreaker(
        CircuitBreakerConfig(failures=1, window_s=1, cooldown_s=1), clock
    )
    b.record_failure()
    clock.now = 1.0
    assert b.allow()
    b.release_probe()
    assert b.allow()


def _model(**kw: object) -> ModelConfig:
    return ModelConfig.model_validate(
        {"name": "m", "base_url": "https://h.example/v1/", "model": "up", **kw}
    )


def test_openai_request_shape_and_stream_usage() -> None:
    p = OpenAIProvider()
    body = {"model": "auto", "messages": [], "seed": 7, "stream_options": {"x": 1}}
    req = p.build_request(_model(), "chat", body, stream=True, api_key="sk-1")
    assert req.url == "https://h.example/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-1"
    assert req.json["model"] == "up" and req.json["seed"] == 7
    assert req.json["stream_options"] == {"x": 1, "include_usage": True}
    whole = p.build_request(_model(), "completions", body, stream=False, api_key=None)
    assert whole.url.endswith("/v1/completions")
    assert "stream_options" not in whole.json and "authorization" not in whole.headers


def test_azure_url_and_key_header() -> None:
    p = get_provider("azure")
    m = _model(
        provider="azure", base_url="https://r.openai.azure.com", api_version="v1"
    )
    req = p.build_request(m, "chat", {"messages": []}, stream=False, api_key="az")
    assert req.url == (
        "https://r.openai.azure.com/openai/deployments/up/chat/completions?api-version=v1"
    )
    assert req.headers["api-key"] == "az" and "authorization" not in req.headers


def test_stream_translator_notes_content_usage_and_errors() -> None:
    t = OpenAIProvider().stream_translator(_model(), "chat")
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    t.feed(None, json.dumps(role))
    assert not t.state.content_started
    tool = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]}
    t.feed(None, json.dumps(tool))
    assert t.state.content_started
    t.feed(
        None,
        json.dumps(
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
        ),
    )
    assert t.state.usage is not None and t.state.usage.total_tokens == 7
    with pytest.raises(UpstreamStatusError):
        t.feed(None, json.dumps({"error": {"message": "overloaded", "code": 529}}))
    with pytest.raises(UpstreamProtocolError):
        t.feed(None, "{not json")


def test_retry_after_and_client_faults() -> None:
    assert _retry_after("1.5") == 1.5
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after("soon") is None
    for status, fault in [
        (400, True),
        (404, True),
        (408, False),
        (409, False),
        (429, False),
        (500, False),
    ]:
        assert is_client_fault(UpstreamStatusError("x", status=status)) is fault


def test_fallback_cycle_is_a_config_error() -> None:
    _, text = make_config({})
    cyclic = text.replace(
        "small:\n    - medium", "small: [medium]\n    medium: [small]"
    )
    assert cyclic != text
    with pytest.raises(ConfigError, match="cycle"):
        parse_config(cyclic)


def test_ledger_writes_every_row_before_close(tmp_path) -> None:
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    ledger.start()
    for i in range(1000):
        ledger.record(
            UsageRow(
                f"r{i}",
                float(i),
                None,
                None,
                None,
                None,
                None,
                "",
                200,
                1,
                1,
                0.0,
                0.0,
                1.0,
                None,
                False,
                None,
            )
        )
    ledger.close()
    again = Ledger(str(tmp_path / "l.sqlite"))
    again.start()
    assert len(again.rows()) == 1000
    again.close()
