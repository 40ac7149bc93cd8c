"""The Anthropic Messages adapter: OpenAI-shaped bodies to ``/v1/messages`` and back.

``anthropic_request`` translates requests (and documents which OpenAI fields are
translated, dropped or rejected); this module holds the provider, the answer
and stream translations, and error descriptions.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from mixroute.config.schema import ModelConfig
from mixroute.errors import (
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from mixroute.providers.anthropic_request import messages_url, translate_request
from mixroute.providers.base import Kind, StreamState, UpstreamRequest, Usage

ANTHROPIC_VERSION = "2023-06-01"

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic names its in-stream errors by type only; the status decides whether
# the upstream layer may retry or fall back.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-]{6,}")


class AnthropicProvider:
    """Translates between OpenAI's wire format and Anthropic's Messages API."""

    name = "anthropic"
    passes_answer_through = False

    def build_request(
        self,
        model: ModelConfig,
        kind: Kind,
        body: Mapping[str, Any],
        *,
        stream: bool,
        api_key: str | None,
    ) -> UpstreamRequest:
        """The ``POST {base_url}/v1/messages`` request for an OpenAI body.

        Raises ``ClientError`` for what Anthropic cannot express and
        ``UpstreamUnavailable`` when the model has no ``base_url``.
        """
        if not model.base_url:
            raise UpstreamUnavailable(
                f'Model "{model.name}" has no base_url configured.', model=model.name
            )
        payload = translate_request(body, model, kind)
        if stream:
            payload["stream"] = True

        headers = {k.lower(): v for k, v in model.headers.items()}
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        headers["content-type"] = "application/json"
        if api_key:
            headers["x-api-key"] = api_key
        return UpstreamRequest(
            url=messages_url(model.base_url), headers=headers, json=payload
        )

    def parse_response(
        self, model: ModelConfig, kind: Kind, data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], Usage | None]:
        """An Anthropic ``message`` → an OpenAI ``chat.completion`` (or
        ``text_completion`` for the completions kind) and its usage.

        Raises ``UpstreamProtocolError`` when ``data`` is not a message.
        """
        content = data.get("content") if isinstance(data, Mapping) else None
        if not isinstance(content, list):
            raise UpstreamProtocolError(
                "The Anthropic answer has no content list.", model=model.name
            )
        texts: list[str] = []
        thoughts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in content:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                tool_calls.append(_tool_call_from_block(block))
            elif block.get("type") == "thinking" and block.get("thinking"):
                thoughts.append(str(block["thinking"]))

        text = "".join(texts) if texts else None
        usage = _usage_from(data.get("usage"))
        finish = _finish_reason(data.get("stop_reason"), kind)
        head = {
            "id": str(data.get("id") or ""),
            "created": int(time.time()),
            "model": str(data.get("model") or model.upstream_model),
        }
        if kind == "completions":
            choice: dict[str, Any] = {
                "index": 0,
                "text": text or "",
                "logprobs": None,
                "finish_reason": finish,
            }
            response = {**head, "object": "text_completion", "choices": [choice]}
        else:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            if thoughts:
                # The field name vLLM and DeepSeek use; OpenAI clients ignore it.
                message["reasoning_content"] = "".join(thoughts)
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
            response = {**head, "object": "chat.completion", "choices": [choice]}
        response["usage"] = _usage_dict(usage, data.get("usage"))
        return response, usage

    def stream_translator(
        self, model: ModelConfig, kind: Kind
    ) -> AnthropicStreamTranslator:
        """A fresh translator for one streamed answer."""
        return AnthropicStreamTranslator(model, kind)

    def error_message(self, status: int, data: Any) -> str:
        """``"<error type>: <message>"`` from Anthropic's error body, key-free."""
        return _describe_error(status, data)


class AnthropicStreamTranslator:
    """Anthropic's SSE events → OpenAI chunks, one choice at index 0.

    Tool calls are numbered in the order their blocks start, and argument
    deltas are routed by block index, so interleaved deltas stay in order per
    call. Thinking arrives as ``reasoning_content`` deltas (vLLM's and
    DeepSeek's field) and counts as content. ``message_stop`` yields a usage
    chunk shaped like OpenAI's ``stream_options.include_usage`` chunk; the
    gateway decides whether the client gets it.
    """

    def __init__(self, model: ModelConfig, kind: Kind) -> None:
        self.state = StreamState()
        self._model_name = model.name
        self._kind = kind
        self._id = ""
        self._model = model.upstream_model
        self._created = int(time.time())
        self._tool_index: dict[int, int] = {}
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._stopped = False

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        """One SSE event in, zero or more OpenAI chunks out (see base.py)."""
        if data == "[DONE]" or not data.strip() or self._stopped:
            return []
        try:
            obj = json.loads(data)
        except ValueError:
            raise UpstreamProtocolError(
                f"The Anthropic stream sent an undecodable {event or 'data'} event.",
                model=self._model_name,
            ) from None
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(
                "The Anthropic stream sent an event that is not a JSON object.",
                model=self._model_name,
            )
        name = event or obj.get("type")
        if name == "message_start":
            return self._on_message_start(obj)
        if name == "content_block_start":
            return self._on_block_start(obj)
        if name == "content_block_delta":
            return self._on_block_delta(obj)
        if name == "message_delta":
            return self._on_message_delta(obj)
        if name == "message_stop":
            self._stopped = True
            return [self._usage_chunk()]
        if name == "error":
            raise UpstreamStatusError(
                _describe_error(None, obj),
                model=self._model_name,
                status=_error_status(obj),
            )
        # ping, content_block_stop and event types added after this adapter
        # carry nothing a client needs.
        return []

    def finish(self) -> list[dict[str, Any]]:
        """The usage chunk if ``message_stop`` never came but a stop reason
        did; raises ``UpstreamProtocolError`` for a stream cut short."""
        if self._stopped:
            return []
        if self.state.finish_reason is None:
            raise UpstreamProtocolError(
                "The Anthropic stream ended before message_stop.",
                model=self._model_name,
            )
        self._stopped = True
        return [self._usage_chunk()]

    def _on_message_start(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        message = obj.get("message")
        if not isinstance(message, Mapping):
            message = {}
        self._id = str(message.get("id") or self._id)
        self._model = str(message.get("model") or self._model)
        self.state.extra["upstream_id"] = self._id
        self._count_usage(message.get("usage"))
        if self._kind == "completions":
            return []
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_block_start(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = obj.get("content_block")
        if not isinstance(block, Mapping):
            return []
        if block.get("type") == "text":
            return self._text_chunks(block.get("text"))
        if block.get("type") != "tool_use" or self._kind == "completions":
            return []
        ordinal = len(self._tool_index)
        self._tool_index[_int(obj.get("index"))] = ordinal
        self.state.content_started = True
        call = {
            "index": ordinal,
            "id": str(block.get("id") or ""),
            "type": "function",
            "function": {"name": str(block.get("name") or ""), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _on_block_delta(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = obj.get("delta")
        if not isinstance(delta, Mapping):
            return []
        if delta.get("type") == "text_delta":
            return self._text_chunks(delta.get("text"))
        if delta.get("type") == "thinking_delta":
            thought = delta.get("thinking")
            if (
                self._kind == "completions"
                or not isinstance(thought, str)
                or not thought
            ):
                return []
            self.state.content_started = True
            return [self._chunk({"reasoning_content": thought})]
        if delta.get("type") != "input_json_delta":
            return []
        ordinal = self._tool_index.get(_int(obj.get("index")))
        partial = delta.get("partial_json")
        if ordinal is None or not isinstance(partial, str) or not partial:
            return []
        call = {"index": ordinal, "function": {"arguments": partial}}
        return [self._chunk({"tool_calls": [call]})]

    def _on_message_delta(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._count_usage(obj.get("usage"))
        delta = obj.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, Mapping) else None
        if stop_reason is None:
            return []
        finish = _finish_reason(stop_reason, self._kind)
        self.state.finish_reason = finish
        if self._kind == "completions":
            return [self._completion_chunk("", finish)]
        return [self._chunk({}, finish)]

    def _text_chunks(self, text: Any) -> list[dict[str, Any]]:
        if not isinstance(text, str) or not text:
            return []
        self.state.content_started = True
        if self._kind == "completions":
            return [self._completion_chunk(text, None)]
        return [self._chunk({"content": text})]

    def _count_usage(self, raw: Any) -> None:
        # message_start carries the input side; message_delta carries the
        # cumulative output (and, on newer API versions, input) counts.
        if not isinstance(raw, Mapping):
            return
        if any(k in raw for k in ("input_tokens", "cache_read_input_tokens")):
            self._prompt_tokens = _prompt_tokens(raw)
        if "output_tokens" in raw:
            self._completion_tokens = _int(raw.get("output_tokens"))
        self.state.usage = Usage(self._prompt_tokens, self._completion_tokens)

    def _head(self) -> dict[str, Any]:
        obj = "text_completion" if self._kind == "completions" else None
        return {
            "id": self._id,
            "object": obj or "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self._head(), "choices": [choice]}

    def _completion_chunk(self, text: str, finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {**self._head(), "choices": [choice]}

    def _usage_chunk(self) -> dict[str, Any]:
        usage = Usage(self._prompt_tokens, self._completion_tokens)
        self.state.usage = usage
        return {**self._head(), "choices": [], "usage": _usage_dict(usage, None)}


# Responses -----------------------------------------------------------------


def _tool_call_from_block(block: Mapping[str, Any]) -> dict[str, Any]:
    arguments = block.get("input")
    return {
        "id": str(block.get("id") or ""),
        "type": "function",
        "function": {
            "name": str(block.get("name") or ""),
            "arguments": json.dumps(
                arguments if arguments is not None else {}, ensure_ascii=False
            ),
        },
    }


def _finish_reason(stop_reason: Any, kind: Kind) -> str:
    if not isinstance(stop_reason, str):
        return "stop"
    finish = _FINISH_REASONS.get(stop_reason, "stop")
    # Legacy completions know no tool calls, and have no tools to call.
    return "stop" if kind == "completions" and finish == "tool_calls" else finish


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _prompt_tokens(raw: Mapping[str, Any]) -> int:
    # Cached input is still input: OpenAI's prompt_tokens counts it too.
    return (
        _int(raw.get("input_tokens"))
        + _int(raw.get("cache_creation_input_tokens"))
        + _int(raw.get("cache_read_input_tokens"))
    )


def _usage_from(raw: Any) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    return Usage(_prompt_tokens(raw), _int(raw.get("output_tokens")))


def _usage_dict(usage: Usage | None, raw: Any) -> dict[str, Any]:
    usage = usage or Usage()
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if isinstance(raw, Mapping) and _int(raw.get("cache_read_input_tokens")):
        cached = _int(raw.get("cache_read_input_tokens"))
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


# Errors --------------------------------------------------------------------


def _error_status(obj: Mapping[str, Any]) -> int:
    error = obj.get("error")
    kind = error.get("type") if isinstance(error, Mapping) else None
    return _ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500


def _describe_error(status: int | None, data: Any) -> str:
    if isinstance(data, bytes | bytearray):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    error = data.get("error") if isinstance(data, Mapping) else None
    where = f"HTTP {status}" if status is not None else "stream error"
    text: str
    if isinstance(error, Mapping):
        kind = error.get("type")
        kind = kind if isinstance(kind, str) and kind else "error"
        message = error.get("message")
        text = f"{kind}: {message}" if isinstance(message, str) and message else kind
    elif isinstance(error, str) and error:
        text = error
    else:
        return f"Anthropic API {where} without a readable error message."
    # Provider messages do not carry keys today; a key echoed back by a proxy
    # in between must still never reach a client or a log.
    text = _KEY_LIKE.sub("[redacted]", " ".join(text.split()))
    if len(text) > 300:
        text = text[:297] + "..."
    return f"Anthropic API {where}: {text}"
