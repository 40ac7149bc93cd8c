"""Request shape limits name the limit they enforce."""

from __future__ import annotations

import pytest

from mixroute.config.schema import LimitsConfig
from mixroute.errors import ClientError
from mixroute.guards.limits import check_body_size, check_limits

LIMITS = LimitsConfig(
    max_messages=3, max_message_chars=20, max_tools=2, max_n=2, max_tokens=100
)


def _error(body: dict) -> ClientError:
    with pytest.raises(ClientError) as info:
        check_limits(body, LIMITS)
    return info.value


def test_a_request_within_every_limit_passes() -> None:
    check_limits(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{}],
            "n": 2,
            "max_tokens": 100,
        },
        LIMITS,
    )


@pytest.mark.parametrize(
    ("body", "limit", "param"),
    [
        (
            {"messages": [{"role": "user", "content": "x"}] * 4},
            "max_messages",
            "messages",
        ),
        (
            {"messages": [{"role": "user", "content": "x" * 21}]},
            "max_message_chars",
            "messages[0].content",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "y" * 30}]}
                ]
            },
            "max_message_chars",
            "messages[0].content",
        ),
        ({"prompt": "z" * 21}, "max_message_chars", "prompt"),
        ({"prompt": ["ok", "z" * 21]}, "max_message_chars", "prompt"),
        ({"tools": [{}, {}, {}]}, "max_tools", "tools"),
        ({"n": 3}, "max_n", "n"),
        ({"max_tokens": 101}, "max_tokens", "max_tokens"),
        ({"max_completion_tokens": 500}, "max_tokens", "max_completion_tokens"),
    ],
)
def test_each_violation_is_a_400_naming_the_limit(
    body: dict, limit: str, param: str
) -> None:
    err = _error(body)
    assert err.status == 400
    assert limit in err.message
    assert err.param == param
    assert err.body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body", [{"n": True}, {"n": "99"}, {"n": 1.5}, {"n": 0}, {"max_tokens": 0}]
)
def test_wrong_types_and_values_are_left_to_the_validator(body: dict) -> None:
    check_limits(body, LIMITS)


def test_body_size_is_a_413_naming_max_body_bytes() -> None:
    check_body_size(2048, LimitsConfig(max_body_bytes=2048))
    with pytest.raises(ClientError) as info:
        check_body_size(2049, LimitsConfig(max_body_bytes=2048))
    assert info.value.status == 413
    assert "max_body_bytes" in info.value.message
    # Without its own limit, the server-wide size applies.
    with pytest.raises(ClientError):
        check_body_size(5000, LimitsConfig(), default=4096)
