"""The Anthropic Messages adapter: every translation both ways, then real bytes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from starlette.applications import Starlette

from fakes import StubClassifier
from mixroute.api.app import create_app
from mixroute.config import parse_config
from mixroute.config.schema import ModelConfig
from mixroute.errors import (
    ClientError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from mixroute.providers.anthropic import AnthropicProvider, AnthropicStreamTranslator
from mixroute.providers.base import Kind, Provider, StreamTranslator
from servers import serve_url

PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAcCBl"
    "CwAAAABJRU5ErkJggg=="
)
KEY = "sk-ant-test-0123456789abcdef"


def model_config(**overrides: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "name": "claude",
        "provider": "anthropic",
        "base_url": "http://127.0.0.1:9",
        "model": "claude-test-1",
        "max_output_tokens": 1024,
    }
    fields.update(overrides)
    return ModelConfig(**fields)


PROVIDER = AnthropicProvider()
MODEL = model_config()


def build(
    body: dict[str, Any],
    *,
    kind: Kind = "chat",
    stream: bool = False,
    model: ModelConfig = MODEL,
) -> dict[str, Any]:
    body = {"model": model.upstream_model, **body}
    return dict(
        PROVIDER.build_request(model, kind, body, stream=stream, api_key=KEY).json
    )


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return build({"messages": list(messages), **fields})


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any = None, **fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **fields}


def text(t: str) -> dict[str, str]:
    return {"type": "text", "text": t}


def rejects(body: dict[str, Any], param: str, kind: Kind = "chat") -> ClientError:
    with pytest.raises(ClientError) as info:
        build(body, kind=kind)
    assert info.value.status == 400
    assert info.value.param == param
    return info.value


# Provider shape, URL and headers --------------------------------------------


def test_meets_the_provider_protocol() -> None:
    provider: Provider = PROVIDER
    translator: StreamTranslator = provider.stream_translator(MODEL, "chat")
    assert provider.name == "anthropic"
    assert translator.state.usage is None


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("https://api.anthropic.example", "https://api.anthropic.example/v1/messages"),
        ("http://127.0.0.1:8/v1", "http://127.0.0.1:8/v1/messages"),
        ("http://127.0.0.1:8/v1/", "http://127.0.0.1:8/v1/messages"),
        ("http://127.0.0.1:8/proxy/", "http://127.0.0.1:8/proxy/v1/messages"),
        ("http://127.0.0.1:8/v1/messages", "http://127.0.0.1:8/v1/messages"),
    ],
)
def test_url_appends_v1_messages_once(base_url: str, url: str) -> None:
    model = model_config(base_url=base_url)
    request = PROVIDER.build_request(
        model, "chat", {"messages": [user("hi")]}, stream=False, api_key=None
    )
    assert request.url == url


def test_headers_carry_key_version_and_model_headers() -> None:
    model = model_config(headers={"anthropic-beta": "tools-2099", "X-Team": "a"})
    request = PROVIDER.build_request(
        model, "chat", {"messages": [user("hi")]}, stream=False, api_key=KEY
    )
    assert request.headers == {
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "anthropic-beta": "tools-2099",
        "x-team": "a",
    }


def test_model_headers_may_pin_another_version_and_no_key_means_no_header() -> None:
    model = model_config(headers={"Anthropic-Version": "2099-01-01"})
    request = PROVIDER.build_request(
        model, "chat", {"messages": [user("hi")]}, stream=False, api_key=None
    )
    assert request.headers["anthropic-version"] == "2099-01-01"
    assert "x-api-key" not in request.headers
    assert "authorization" not in request.headers


def test_unconfigured_model_is_unavailable() -> None:
    with pytest.raises(UpstreamUnavailable):
        build({"messages": [user("hi")]}, model=model_config(base_url=None))


# Messages -------------------------------------------------------------------


def test_minimal_chat_body() -> None:
    assert chat(user("Hello")) == {
        "model": "claude-test-1",
        "messages": [{"role": "user", "content": [text("Hello")]}],
        "max_tokens": 1024,
    }


def test_system_and_developer_messages_join_in_order_into_system() -> None:
    payload = chat(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [text("Answer in French."), text("Cite.")]},
        user("Hi"),
        assistant("Salut"),
        {"role": "system", "content": "Late rule."},
        user("Again"),
    )
    assert payload["system"] == "Be brief.\n\nAnswer in French.\nCite.\n\nLate rule."
    assert [t["role"] for t in payload["messages"]] == ["user", "assistant", "user"]


def test_empty_system_is_omitted() -> None:
    payload = chat({"role": "system", "content": ""}, user("Hi"))
    assert "system" not in payload


def test_consecutive_turns_of_one_role_merge_so_roles_alternate() -> None:
    payload = chat(
        user("one"),
        user([text("two"), text("")]),
        assistant("three"),
        assistant([text("four")]),
        assistant(""),
        user("five"),
    )
    assert payload["messages"] == [
        {"role": "user", "content": [text("one"), text("two")]},
        {"role": "assistant", "content": [text("three"), text("four")]},
        {"role": "user", "content": [text("five")]},
    ]


def test_empty_message_between_two_users_still_alternates() -> None:
    payload = chat(user("a"), assistant(""), user("b"))
    assert payload["messages"] == [{"role": "user", "content": [text("a"), text("b")]}]


def test_final_assistant_prefill_loses_trailing_whitespace() -> None:
    payload = chat(user("Write JSON"), assistant("{\n  "))
    assert payload["messages"][-1] == {"role": "assistant", "content": [text("{")]}
    payload = chat(user("Go"), assistant("   "))
    assert [t["role"] for t in payload["messages"]] == ["user"]


def test_images_data_url_and_http_url() -> None:
    payload = chat(
        user(
            [
                text("What is in these?"),
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/PNG;base64,{PNG_B64}"},
                },
                {
                    "type": "image_url",
                    "image_url": {
                        "url": "https://img.example/cat.jpg",
                        "detail": "low",
                    },
                },
            ]
        )
    )
    assert payload["messages"][0]["content"] == [
        text("What is in these?"),
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
        },
        {
            "type": "image",
            "source": {"type": "url", "url": "https://img.example/cat.jpg"},
        },
    ]


@pytest.mark.parametrize(
    "url",
    [
        "data:image/bmp;base64,AAAA",
        "data:image/png,rawbytes",
        "ftp://img.example/cat.png",
        "cat.png",
    ],
)
def test_unusable_image_urls_are_client_errors(url: str) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    error = rejects(
        {"messages": [user([text("x"), part])]}, "messages[0].content[1].image_url"
    )
    assert "messages[0].content[1]" in error.message


def test_unsupported_parts_roles_and_shapes_name_the_place() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    rejects({"messages": [user("a"), user([audio])]}, "messages[1].content[0]")
    image = {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}
    rejects({"messages": [user("a"), assistant([image])]}, "messages[1].content[0]")
    rejects(
        {"messages": [user("a"), {"role": "robot", "content": "x"}]}, "messages[1].role"
    )
    rejects({"messages": [user("a"), "hello"]}, "messages[1]")
    rejects({"messages": [user(42)]}, "messages[0].content")
    rejects({"messages": []}, "messages")
    rejects({"messages": [{"role": "system", "content": "only me"}]}, "messages")
    rejects(
        {
            "messages": [
                {"role": "system", "content": [{"type": "image_url"}]},
                user("x"),
            ]
        },
        "messages[0].content[0]",
    )


# Tools ----------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "strict": True,
    },
}
CLOCK = {"type": "function", "function": {"name": "now"}}


def test_tool_definitions_translate() -> None:
    payload = chat(user("Weather in Paris?"), tools=[WEATHER, CLOCK])
    assert payload["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in payload


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "now"}},
            None,
            {"type": "tool", "name": "now"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_tool_choice_and_parallel_tool_calls(
    choice: Any, parallel: bool | None, expected: dict[str, Any] | None
) -> None:
    fields: dict[str, Any] = {"tools": [WEATHER, CLOCK]}
    if choice is not None:
        fields["tool_choice"] = choice
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel
    payload = chat(user("x"), **fields)
    assert payload.get("tool_choice") == expected


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in chat(user("x"), tool_choice="auto", tools=[])
    rejects({"messages": [user("x")], "tool_choice": "required"}, "tool_choice")
    unknown = {"type": "function", "function": {"name": "launch"}}
    rejects(
        {"messages": [user("x")], "tools": [WEATHER], "tool_choice": unknown},
        "tool_choice",
    )
    rejects(
        {"messages": [user("x")], "tools": [{"type": "code_interpreter"}]}, "tools[0]"
    )
    rejects({"messages": [user("x")], "tools": {"a": 1}}, "tools")


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def test_assistant_tool_calls_and_tool_results() -> None:
    payload = chat(
        user("Weather in Paris and the time?"),
        assistant(
            "Checking.",
            tool_calls=[
                tool_call("toolu_1", "get_weather", '{"city": "Paris"}'),
                tool_call("toolu_2", "now", ""),
            ],
        ),
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C, cloudy"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [text("12:00")]},
        user("And tomorrow?"),
        tools=[WEATHER, CLOCK],
    )
    assert payload["messages"] == [
        {"role": "user", "content": [text("Weather in Paris and the time?")]},
        {
            "role": "assistant",
            "content": [
                text("Checking."),
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "18°C, cloudy",
                },
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "12:00"},
                text("And tomorrow?"),
            ],
        },
    ]


def test_tool_results_go_ahead_of_text_in_a_merged_user_turn() -> None:
    payload = chat(
        user("go"),
        assistant(None, tool_calls=[tool_call("t1", "now", "{}")]),
        user("note first"),
        {"role": "tool", "tool_call_id": "t1", "content": ""},
    )
    assert payload["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1"},
        text("note first"),
    ]


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", "null"])
def test_unparsable_tool_arguments_name_the_message(arguments: str) -> None:
    body = {
        "messages": [
            user("x"),
            user("y"),
            assistant(None, tool_calls=[tool_call("t1", "get_weather", arguments)]),
        ]
    }
    error = rejects(body, "messages[2].tool_calls[0].function.arguments")
    assert "message 2" in error.message


def test_malformed_tool_calls_and_results_are_client_errors() -> None:
    rejects(
        {"messages": [user("x"), assistant(None, tool_calls=[{"id": "t"}])]},
        "messages[1].tool_calls[0]",
    )
    rejects(
        {"messages": [user("x"), assistant(None, tool_calls="t")]},
        "messages[1].tool_calls",
    )
    rejects(
        {"messages": [user("x"), {"role": "tool", "content": "r"}]},
        "messages[1].tool_call_id",
    )
    rejects({"messages": [user("x")], "functions": [{"name": "f"}]}, "functions")


# Sampling fields ------------------------------------------------------------


def test_stop_sequences() -> None:
    assert chat(user("x"), stop="END")["stop_sequences"] == ["END"]
    assert chat(user("x"), stop=["A", "", "B"])["stop_sequences"] == ["A", "B"]
    assert "stop_sequences" not in chat(user("x"), stop=[])
    rejects({"messages": [user("x")], "stop": ["\n"]}, "stop")
    rejects({"messages": [user("x")], "stop": 5}, "stop")


def test_max_tokens_default_and_both_spellings() -> None:
    assert chat(user("x"))["max_tokens"] == 1024
    assert chat(user("x"), max_tokens=None)["max_tokens"] == 1024
    assert chat(user("x"), max_tokens=50)["max_tokens"] == 50
    assert chat(user("x"), max_completion_tokens=70, max_tokens=50)["max_tokens"] == 70
    for bad in (0, "10", True, 2.5):
        rejects({"messages": [user("x")], "max_tokens": bad}, "max_tokens")
    rejects(
        {"messages": [user("x")], "max_completion_tokens": -1}, "max_completion_tokens"
    )


def test_temperature_top_p_top_k_user_and_stream() -> None:
    payload = build(
        {
            "messages": [user("x")],
            "temperature": 0.3,
            "top_p": 0.9,
            "top_k": 40,
            "user": "u-42",
            "stream": True,
        },
        stream=True,
    )
    assert payload["temperature"] == 0.3
    assert payload["top_p"] == 0.9
    assert payload["top_k"] == 40
    assert payload["metadata"] == {"user_id": "u-42"}
    assert payload["stream"] is True
    assert chat(user("x"), temperature=1.7)["temperature"] == 1.0
    assert "stream" not in chat(user("x"), stream=True)
    rejects({"messages": [user("x")], "temperature": 2.5}, "temperature")
    rejects({"messages": [user("x")], "top_p": "high"}, "top_p")


def test_fields_that_change_nothing_are_dropped() -> None:
    payload = chat(
        user("x"),
        n=1,
        logprobs=False,
        response_format={"type": "text"},
        frequency_penalty=0.5,
        presence_penalty=0.1,
        logit_bias={"42": 3},
        seed=7,
        store=False,
        metadata={"k": "v"},
        service_tier="auto",
        stream_options={"include_usage": True},
        reasoning_effort="low",
    )
    assert set(payload) == {"model", "messages", "max_tokens"}
    named = chat({"role": "user", "content": "x", "name": "alice"})
    assert named["messages"] == [{"role": "user", "content": [text("x")]}]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("response_format", {"type": "json_object"}),
        ("modalities", ["text", "audio"]),
    ],
)
def test_fields_that_change_the_answer_shape_are_rejected(
    field: str, value: Any
) -> None:
    error = rejects(
        {"messages": [user("x")], field: value},
        "modalities"
        if field == "modalities"
        else ("logprobs" if field == "top_logprobs" else field),
    )
    assert "Anthropic" in error.message


THINK = {"type": "enabled", "budget_tokens": 2048}


def test_thinking_passes_on_without_sampling_fields() -> None:
    payload = chat(
        user("Prove it."),
        thinking=THINK,
        temperature=0.2,
        top_p=0.5,
        top_k=5,
        max_tokens=4000,
    )
    assert payload["thinking"] == THINK
    assert not {"temperature", "top_p", "top_k"} & set(payload)
    assert payload["max_tokens"] == 4000


def test_thinking_budget_stays_below_max_tokens() -> None:
    payload = chat(user("x"), thinking={"type": "enabled", "budget_tokens": 8000})
    # max_tokens defaults to the model's 1024 here: no room for 1024 of thought.
    assert "thinking" not in payload
    roomy = chat(
        user("x"), thinking={"type": "enabled", "budget_tokens": 8000}, max_tokens=3000
    )
    assert roomy["thinking"]["budget_tokens"] == 2999
    small = chat(user("x"), thinking=THINK, max_tokens=1000, temperature=0.2)
    assert "thinking" not in small
    assert small["temperature"] == 0.2


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [WEATHER], "tool_choice": "required"},
        {
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        {"prefill": True},
        {"tool_loop": True},
    ],
)
def test_thinking_is_left_out_where_anthropic_forbids_it(
    fields: dict[str, Any],
) -> None:
    messages: list[dict[str, Any]] = [user("Weather in Paris?")]
    if fields.pop("prefill", False):
        messages.append(assistant("It is"))
    if fields.pop("tool_loop", False):
        call = tool_call("t1", "get_weather", '{"city": "Paris"}')
        messages.append(assistant(None, tool_calls=[call]))
        messages.append({"role": "tool", "tool_call_id": "t1", "content": "sunny"})
        fields["tools"] = [WEATHER]
    payload = chat(*messages, thinking=THINK, temperature=0.5, **fields)
    assert "thinking" not in payload
    assert payload["temperature"] == 0.5


def test_thinking_disabled_adaptive_and_invalid() -> None:
    off = chat(user("x"), thinking={"type": "disabled"}, temperature=0.3)
    assert off["thinking"] == {"type": "disabled"} and off["temperature"] == 0.3
    adaptive = chat(user("x"), thinking={"type": "adaptive"}, temperature=0.3)
    assert adaptive["thinking"] == {"type": "adaptive"}
    assert "temperature" not in adaptive
    rejects({"messages": [user("x")], "thinking": "on"}, "thinking")
    bad_budget = {"type": "enabled", "budget_tokens": 100}
    rejects({"messages": [user("x")], "thinking": bad_budget}, "thinking.budget_tokens")


def test_thinking_blocks_become_reasoning_content() -> None:
    content = [
        {"type": "thinking", "thinking": "Paris is in France.", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Sunny."},
    ]
    data = {**MESSAGE, "content": content, "stop_reason": "end_turn"}
    response, _ = PROVIDER.parse_response(MODEL, "chat", data)
    ChatCompletion.model_validate(response)
    message = response["choices"][0]["message"]
    assert message["content"] == "Sunny."
    assert message["reasoning_content"] == "Paris is in France."


# Legacy completions ---------------------------------------------------------


def test_completions_prompt_becomes_one_user_message() -> None:
    payload = build(
        {"prompt": "Once upon", "max_tokens": 20, "stop": "THE END"}, kind="completions"
    )
    assert payload == {
        "model": "claude-test-1",
        "messages": [{"role": "user", "content": [text("Once upon")]}],
        "max_tokens": 20,
        "stop_sequences": ["THE END"],
    }
    assert build({"prompt": ["Hi"]}, kind="completions")["messages"][0]["content"] == [
        text("Hi")
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "a", "echo": True}, "echo"),
        ({"prompt": "a", "suffix": "z"}, "suffix"),
        ({"prompt": "a", "best_of": 3}, "best_of"),
        ({"prompt": "a", "logprobs": 5}, "logprobs"),
        ({"prompt": "a", "n": 4}, "n"),
    ],
)
def test_completions_rejections(fields: dict[str, Any], param: str) -> None:
    rejects(fields, param, kind="completions")


# Whole answers --------------------------------------------------------------

MESSAGE: dict[str, Any] = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-test-1-20990101",
    "content": [
        {"type": "text", "text": "Let me check "},
        {"type": "text", "text": "both."},
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "get_weather",
            "input": {"city": "Zürich"},
        },
        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 5,
        "output_tokens": 30,
    },
}


def test_parse_response_text_tools_and_usage() -> None:
    response, usage = PROVIDER.parse_response(MODEL, "chat", MESSAGE)
    ChatCompletion.model_validate(response)
    assert response["id"] == "msg_01"
    assert response["object"] == "chat.completion"
    assert response["model"] == "claude-test-1-20990101"
    assert isinstance(response["created"], int)
    [choice] = response["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Let me check both.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'},
            },
            {
                "id": "toolu_2",
                "type": "function",
                "function": {"name": "now", "arguments": "{}"},
            },
        ],
    }
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (125, 30)
    assert response["usage"] == {
        "prompt_tokens": 125,
        "completion_tokens": 30,
        "total_tokens": 155,
        "prompt_tokens_details": {"cached_tokens": 5},
    }


def test_tool_calls_round_trip_through_history() -> None:
    response, _ = PROVIDER.parse_response(MODEL, "chat", MESSAGE)
    payload = chat(
        user("Weather?"), response["choices"][0]["message"], tools=[WEATHER, CLOCK]
    )
    assert payload["messages"][1] == {
        "role": "assistant",
        # The two text blocks come back as one string, then one block.
        "content": [text("Let me check both."), *MESSAGE["content"][2:]],
    }


def test_only_tool_use_means_no_content() -> None:
    data = {**MESSAGE, "content": MESSAGE["content"][2:3]}
    response, _ = PROVIDER.parse_response(MODEL, "chat", data)
    assert response["choices"][0]["message"]["content"] is None
    data = {
        **MESSAGE,
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
    }
    response, _ = PROVIDER.parse_response(MODEL, "chat", data)
    assert "tool_calls" not in response["choices"][0]["message"]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reason_mapping(stop_reason: str | None, finish: str) -> None:
    data = {**MESSAGE, "stop_reason": stop_reason}
    response, _ = PROVIDER.parse_response(MODEL, "chat", data)
    assert response["choices"][0]["finish_reason"] == finish


def test_completions_never_finish_with_tool_calls() -> None:
    response, _ = PROVIDER.parse_response(MODEL, "completions", MESSAGE)
    Completion.model_validate(response)
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["choices"][0]["text"] == "Let me check both."


def test_completions_answer_is_a_text_completion() -> None:
    data = {
        **MESSAGE,
        "content": [{"type": "text", "text": " a time"}],
        "stop_reason": "max_tokens",
    }
    response, usage = PROVIDER.parse_response(MODEL, "completions", data)
    Completion.model_validate(response)
    assert response["object"] == "text_completion"
    assert response["choices"] == [
        {"index": 0, "text": " a time", "logprobs": None, "finish_reason": "length"}
    ]
    assert usage is not None and usage.total_tokens == 155


def test_not_a_message_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        PROVIDER.parse_response(MODEL, "chat", {"type": "error", "error": {}})


# Streams --------------------------------------------------------------------


def ev(event: str, **data: Any) -> tuple[str, str]:
    return event, json.dumps({"type": event, **data})


def message_start(input_tokens: int = 12, **usage: int) -> tuple[str, str]:
    message: dict[str, Any] = {
        "id": "msg_s1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-1-20990101",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
    }
    return ev("message_start", message=message)


def text_block(index: int) -> tuple[str, str]:
    return ev(
        "content_block_start", index=index, content_block={"type": "text", "text": ""}
    )


def text_delta(index: int, t: str) -> tuple[str, str]:
    return ev(
        "content_block_delta", index=index, delta={"type": "text_delta", "text": t}
    )


def tool_block(index: int, call_id: str, name: str) -> tuple[str, str]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    return ev("content_block_start", index=index, content_block=block)


def json_delta(index: int, partial: str) -> tuple[str, str]:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return ev("content_block_delta", index=index, delta=delta)


def message_delta(stop_reason: str, output_tokens: int) -> tuple[str, str]:
    return ev(
        "message_delta",
        delta={"stop_reason": stop_reason, "stop_sequence": None},
        usage={"output_tokens": output_tokens},
    )


def text_stream() -> list[tuple[str, str]]:
    return [
        message_start(cache_read_input_tokens=3),
        text_block(0),
        ev("ping"),
        text_delta(0, "Hel"),
        text_delta(0, "lo ☃"),
        ev("content_block_stop", index=0),
        message_delta("end_turn", 7),
        ev("message_stop"),
    ]


def run(
    events: Sequence[tuple[str | None, str]], kind: Kind = "chat"
) -> tuple[AnthropicStreamTranslator, list[dict[str, Any]]]:
    translator = PROVIDER.stream_translator(MODEL, kind)
    chunks: list[dict[str, Any]] = []
    for name, data in events:
        chunks += translator.feed(name, data)
    chunks += translator.finish()
    return translator, chunks


def assert_one_choice_at_zero(chunks: list[dict[str, Any]]) -> None:
    for chunk in chunks:
        assert [c["index"] for c in chunk["choices"]] in ([0], [])


def test_text_stream() -> None:
    translator, chunks = run(text_stream())
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert_one_choice_at_zero(chunks)
    assert {c["id"] for c in chunks} == {"msg_s1"}
    assert {c["model"] for c in chunks} == {"claude-test-1-20990101"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo ☃"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [
        None,
        None,
        None,
        "stop",
    ]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 7,
        "total_tokens": 22,
    }
    assert translator.state.finish_reason == "stop"
    assert translator.state.usage is not None
    assert translator.state.usage.total_tokens == 22
    assert translator.state.content_started


def test_content_started_only_with_the_first_real_delta() -> None:
    translator = PROVIDER.stream_translator(MODEL, "chat")
    events = text_stream()
    assert len(translator.feed(*events[0])) == 1
    assert translator.feed(*events[1]) == []
    assert not translator.state.content_started
    assert translator.state.usage is not None
    assert translator.state.usage.prompt_tokens == 15
    translator.feed(*events[3])
    assert translator.state.content_started


def test_two_tool_calls_with_interleaved_argument_deltas() -> None:
    events = [
        message_start(),
        text_block(0),
        text_delta(0, "Checking."),
        ev("content_block_stop", index=0),
        tool_block(1, "toolu_a", "get_weather"),
        json_delta(1, ""),
        tool_block(2, "toolu_b", "get_weather"),
        json_delta(1, '{"city": '),
        json_delta(2, '{"city": "Os'),
        json_delta(1, '"Paris"}'),
        json_delta(2, 'lo"}'),
        ev("content_block_stop", index=1),
        ev("content_block_stop", index=2),
        message_delta("tool_use", 40),
        ev("message_stop"),
    ]
    translator, chunks = run(events)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert_one_choice_at_zero(chunks)
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert calls[1] == {
        "index": 1,
        "id": "toolu_b",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    joined: dict[int, str] = {}
    for call in calls:
        joined[call["index"]] = (
            joined.get(call["index"], "") + call["function"]["arguments"]
        )
    assert {i: json.loads(a) for i, a in joined.items()} == {
        0: {"city": "Paris"},
        1: {"city": "Oslo"},
    }
    assert translator.state.finish_reason == "tool_calls"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_stream_of_only_a_tool_call_starts_content_at_the_tool() -> None:
    translator = PROVIDER.stream_translator(MODEL, "chat")
    translator.feed(*message_start())
    assert not translator.state.content_started
    translator.feed(*tool_block(0, "toolu_x", "now"))
    assert translator.state.content_started


def test_error_event_raises_a_status_error_without_secrets() -> None:
    translator = PROVIDER.stream_translator(MODEL, "chat")
    translator.feed(*message_start())
    error = {"type": "overloaded_error", "message": f"Overloaded (key {KEY})"}
    with pytest.raises(UpstreamStatusError) as info:
        translator.feed(*ev("error", error=error))
    assert info.value.status == 529
    assert info.value.retryable
    assert info.value.model == "claude"
    assert "overloaded_error: Overloaded" in info.value.message
    assert KEY not in info.value.message
    with pytest.raises(UpstreamStatusError) as info:
        translator.feed(
            None,
            json.dumps(
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "bad"},
                }
            ),
        )
    assert info.value.status == 400
    assert not info.value.retryable


def test_unknown_events_and_deltas_are_ignored() -> None:
    events = [
        message_start(),
        ev("content_block_start", index=0, content_block={"type": "brand_new"}),
        ev("content_block_delta", index=0, delta={"type": "new_delta", "x": "hmm"}),
        ev("content_block_delta", index=0, delta={"type": "signature_delta"}),
        ev("content_block_stop", index=0),
        ev("brand_new_event", payload=[1, 2]),
        text_block(1),
        text_delta(1, "ok"),
        message_delta("end_turn", 2),
        ev("message_stop"),
        ev("ping"),
    ]
    _, chunks = run(events)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "ok"}, {}]


def test_thinking_streams_as_reasoning_content() -> None:
    thinking = {"type": "thinking", "thinking": ""}
    events = [
        message_start(),
        ev("content_block_start", index=0, content_block=thinking),
        ev(
            "content_block_delta",
            index=0,
            delta={"type": "thinking_delta", "thinking": "2+2 is 4."},
        ),
        ev(
            "content_block_delta",
            index=0,
            delta={"type": "signature_delta", "signature": "c2ln"},
        ),
        ev("content_block_stop", index=0),
        text_block(1),
        text_delta(1, "4"),
        message_delta("end_turn", 9),
        ev("message_stop"),
    ]
    translator = PROVIDER.stream_translator(MODEL, "chat")
    translator.feed(*events[0])
    translator.feed(*events[1])
    assert not translator.state.content_started
    [chunk] = translator.feed(*events[2])
    ChatCompletionChunk.model_validate(chunk)
    assert chunk["choices"][0]["delta"] == {"reasoning_content": "2+2 is 4."}
    assert translator.state.content_started
    _, chunks = run(events, kind="completions")
    assert [c["choices"][0]["text"] for c in chunks if c["choices"]] == ["4", ""]


def test_event_name_may_come_from_data_alone() -> None:
    events = [(None, data) for _, data in text_stream()]
    _, chunks = run(events)
    assert (
        "".join(
            c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]
        )
        == "Hello ☃"
    )


def test_undecodable_and_non_object_events_are_protocol_errors() -> None:
    translator = PROVIDER.stream_translator(MODEL, "chat")
    with pytest.raises(UpstreamProtocolError):
        translator.feed("content_block_delta", '{"type": "content_bl')
    with pytest.raises(UpstreamProtocolError):
        translator.feed("content_block_delta", "[1, 2]")
    assert translator.feed("ping", "") == []
    assert translator.feed(None, "[DONE]") == []


def test_stream_cut_before_message_stop() -> None:
    translator = PROVIDER.stream_translator(MODEL, "chat")
    for event in text_stream()[:4]:
        translator.feed(*event)
    with pytest.raises(UpstreamProtocolError):
        translator.finish()
    # A stop reason arrived, only message_stop is missing: the answer is whole.
    translator, chunks = run(text_stream()[:-1])
    assert chunks[-1]["usage"]["total_tokens"] == 22
    assert translator.finish() == []


def test_message_delta_input_usage_updates_the_prompt_count() -> None:
    events = text_stream()
    events[6] = ev(
        "message_delta",
        delta={"stop_reason": "end_turn"},
        usage={"input_tokens": 20, "output_tokens": 9},
    )
    translator, chunks = run(events)
    assert chunks[-1]["usage"]["prompt_tokens"] == 20
    assert translator.state.usage is not None
    assert translator.state.usage.completion_tokens == 9


def test_completions_stream_is_text_completion_chunks() -> None:
    _, chunks = run(text_stream(), kind="completions")
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == ["Hel", "lo ☃", ""]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 22
    assert {c["object"] for c in chunks} == {"text_completion"}


# Error bodies ---------------------------------------------------------------


def test_error_message_shapes() -> None:
    body = {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Slow down."},
        "request_id": "req_1",
    }
    assert (
        PROVIDER.error_message(429, body)
        == "Anthropic API HTTP 429: rate_limit_error: Slow down."
    )
    assert PROVIDER.error_message(
        429, json.dumps(body).encode()
    ) == PROVIDER.error_message(429, body)
    assert PROVIDER.error_message(502, b"<html>bad gateway</html>") == (
        "Anthropic API HTTP 502 without a readable error message."
    )
    assert PROVIDER.error_message(500, None).startswith("Anthropic API HTTP 500")
    leaky = {
        "error": {"type": "authentication_error", "message": f"invalid x-api-key {KEY}"}
    }
    message = PROVIDER.error_message(401, leaky)
    assert KEY not in message and "[redacted]" in message
    long = {"error": {"type": "api_error", "message": "x" * 5000}}
    assert len(PROVIDER.error_message(500, long)) < 400


# Real bytes over loopback ---------------------------------------------------


def sse_bytes(events: list[tuple[str, str]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {data}\n\n".encode() for name, data in events
    )


class FakeAnthropic:
    """A Messages API stand-in on 127.0.0.1 that records what it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any], str]] = []
        self.events = text_stream()

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body, request.path))
        if request.headers.get("x-api-key") != KEY:
            error = {
                "type": "error",
                "error": {
                    "type": "authentication_error",
                    "message": "invalid x-api-key",
                },
            }
            return web.json_response(error, status=401)
        if not body.get("stream"):
            return web.json_response(MESSAGE)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        payload = sse_bytes(self.events)
        # Small writes split events, lines and the multi-byte snowman apart.
        for start in range(0, len(payload), 7):
            await response.write(payload[start : start + 7])
            await asyncio.sleep(0)
        await response.write_eof()
        return response


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic()
    app = web.Application()
    app.router.add_post("/v1/messages", fake.messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def parse_sse(buffer: bytearray) -> Iterator[tuple[str | None, str]]:
    """Minimal SSE framing: complete events off the front of ``buffer``."""
    while b"\n\n" in buffer:
        raw, _, rest = bytes(buffer).partition(b"\n\n")
        buffer[:] = rest
        event: str | None = None
        data: list[str] = []
        for line in raw.decode("utf-8").split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
        yield event, "\n".join(data)


async def test_streams_real_sse_bytes_from_a_loopback_server(
    fake_anthropic: tuple[FakeAnthropic, str],
) -> None:
    fake, base_url = fake_anthropic
    model = model_config(base_url=base_url + "/v1", headers={"anthropic-beta": "x"})
    body = {
        "model": "claude-test-1",
        "messages": [{"role": "system", "content": "Brief."}, user("Say hello")],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = PROVIDER.build_request(model, "chat", body, stream=True, api_key=KEY)
    translator = PROVIDER.stream_translator(model, "chat")
    chunks: list[dict[str, Any]] = []
    buffer = bytearray()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            request.url, headers=dict(request.headers), json=request.json
        ) as response:
            assert response.status == 200
            async for piece in response.content.iter_any():
                buffer += piece
                for event, data in parse_sse(buffer):
                    chunks += translator.feed(event, data)
    chunks += translator.finish()

    [(headers, received, path)] = fake.requests
    assert path == "/v1/messages"
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "x"
    assert headers["Content-Type"].startswith("application/json")
    assert "Authorization" not in headers
    assert received == {
        "model": "claude-test-1",
        "system": "Brief.",
        "messages": [{"role": "user", "content": [text("Say hello")]}],
        "max_tokens": 1024,
        "stream": True,
    }
    content = "".join(
        c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]
    )
    assert content == "Hello ☃"
    assert chunks[-1]["usage"]["total_tokens"] == 22
    assert translator.state.finish_reason == "stop"


async def test_whole_answer_and_error_status_from_a_loopback_server(
    fake_anthropic: tuple[FakeAnthropic, str],
) -> None:
    _, base_url = fake_anthropic
    model = model_config(base_url=base_url)
    body = {
        "model": "claude-test-1",
        "messages": [user("Weather?")],
        "tools": [WEATHER],
    }
    async with aiohttp.ClientSession() as session:
        request = PROVIDER.build_request(model, "chat", body, stream=False, api_key=KEY)
        async with session.post(
            request.url, headers=dict(request.headers), json=request.json
        ) as response:
            data = await response.json()
        answer, usage = PROVIDER.parse_response(model, "chat", data)
        assert (
            answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"]
            == "get_weather"
        )
        assert usage is not None and usage.total_tokens == 155

        request = PROVIDER.build_request(
            model, "chat", body, stream=False, api_key="sk-wrong-key-123"
        )
        async with session.post(
            request.url, headers=dict(request.headers), json=request.json
        ) as response:
            status, data = response.status, await response.json()
    message = PROVIDER.error_message(status, data)
    assert message == "Anthropic API HTTP 401: authentication_error: invalid x-api-key"


# Through the gateway --------------------------------------------------------


def gateway_app(base_url: str, ledger: str) -> Starlette:
    raw = {
        "version": 1,
        "models": [
            {
                "name": "claude",
                "provider": "anthropic",
                "base_url": base_url,
                "model": "claude-test-1",
                "api_key_env": "MIXROUTE_TEST_ANTHROPIC_KEY",
                "max_output_tokens": 1024,
                "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
                "timeouts": {"connect": 1.0, "read": 5.0, "total": 10.0},
                "max_retries": 0,
            }
        ],
        "routes": [{"name": "chat", "candidates": ["claude"], "utterances": ["hi"]}],
        "classifier": {"backend": "tfidf", "head": None},
        "policies": {"default_model": "claude"},
        "server": {"ledger_path": ledger},
    }
    text = yaml.safe_dump(raw, sort_keys=False)
    config = parse_config(text, env={})
    # The stand-in classifier from tests/fakes.py: named models skip it anyway.
    return create_app(
        config, classifier=StubClassifier(routes=("chat",)), config_text=text
    )


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """The gateway under uvicorn on a free loopback port; yields its /v1 URL."""
    with serve_url(app) as url:
        yield f"{url}/v1"


async def test_openai_sdk_through_the_gateway_to_anthropic(
    fake_anthropic: tuple[FakeAnthropic, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, base_url = fake_anthropic
    monkeypatch.setenv("MIXROUTE_TEST_ANTHROPIC_KEY", KEY)
    app = gateway_app(base_url, str(tmp_path / "usage.sqlite"))
    with serve(app) as url:
        client = openai.AsyncOpenAI(
            base_url=url, api_key="client-secret", max_retries=0
        )
        raw = await client.chat.completions.with_raw_response.create(
            model="claude",
            messages=[
                {"role": "system", "content": "Brief."},
                {"role": "user", "content": "Weather in Zürich?"},
            ],
            tools=[WEATHER],
            tool_choice="required",
        )
        answer = raw.parse()
        stream = await client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        await client.close()
        rows = app.state.gateway.ledger.rows()

    assert raw.headers["x-mixroute-model"] == "claude"
    calls = answer.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "now"]
    assert json.loads(calls[0].function.arguments) == {"city": "Zürich"}
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.usage is not None and answer.usage.prompt_tokens == 125

    text_out = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text_out == "Hello ☃"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 22

    (headers, whole, _), (_, streamed, _) = fake.requests
    assert headers["x-api-key"] == KEY
    assert "client-secret" not in json.dumps(headers)
    assert whole["system"] == "Brief."
    assert whole["tool_choice"] == {"type": "any"}
    assert whole["tools"][0]["name"] == "get_weather"
    assert streamed["stream"] is True and "stream_options" not in streamed
    assert [(r["input_tokens"], r["output_tokens"]) for r in rows] == [
        (125, 30),
        (15, 7),
    ]


# Hostile input never escapes the error tree ---------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "x"])
_message = st.fixed_dictionaries(
    {"role": _roles},
    optional={
        "content": _json | st.text(max_size=8),
        "tool_calls": _json,
        "tool_call_id": _json,
    },
)
_body = st.fixed_dictionaries(
    {"messages": st.lists(_message | _json, max_size=4)},
    optional={
        k: _json
        for k in ("tools", "tool_choice", "stop", "max_tokens", "temperature", "n")
    },
)


@settings(max_examples=150, deadline=None)
@given(body=_body, kind=st.sampled_from(["chat", "completions"]))
def test_any_body_translates_or_is_a_client_error(
    body: dict[str, Any], kind: Kind
) -> None:
    try:
        request = PROVIDER.build_request(MODEL, kind, body, stream=False, api_key=KEY)
    except ClientError:
        return
    json.dumps(request.json)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    None,
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "message_delta",
                    "message_stop",
                    "error",
                    "ping",
                ]
            ),
            _json,
        ),
        max_size=6,
    )
)
def test_any_event_sequence_yields_chunks_or_an_upstream_error(
    events: list[tuple[str | None, Any]],
) -> None:
    translator = PROVIDER.stream_translator(MODEL, "chat")
    try:
        for name, data in events:
            for chunk in translator.feed(name, json.dumps(data)):
                assert [c["index"] for c in chunk["choices"]] in ([0], [])
        translator.finish()
    except UpstreamError:
        pass
    PROVIDER.error_message(500, events)
