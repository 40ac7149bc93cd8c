"""The OpenAI-compatible adapter: OpenAI, Azure OpenAI, vLLM, Ollama, LM Studio.

The wire format already is OpenAI's, so translation is light: the model name
is replaced, streams ask for usage, and Azure gets its deployment URL and
``api-key`` header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mixroute import wirejson
from mixroute.config.schema import ModelConfig
from mixroute.errors import UpstreamProtocolError, UpstreamStatusError
from mixroute.providers.base import (
    Kind,
    StreamState,
    UpstreamRequest,
    Usage,
)

AZURE_DEFAULT_API_VERSION = "2024-10-21"
_PATHS: dict[str, str] = {"chat": "chat/completions", "completions": "completions"}
_MAX_MESSAGE = 500


def usage_from(data: Any) -> Usage | None:
    """An OpenAI ``usage`` object as ``Usage``; None when absent or malformed."""
    if data is None or not isinstance(data, Mapping):
        return None
    prompt = data.get("prompt_tokens")
    completion = data.get("completion_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    return Usage(
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )


def has_content(chunk: Mapping[str, Any]) -> bool:
    """Whether an OpenAI chunk carries real output (text or a tool call)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        # ``dict``, not ``Mapping``: decoded JSON, and the ABC check costs more.
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("function_call")
            or delta.get("refusal")
            or delta.get("reasoning_content")
        ):
            return True
    return False


class OpenAIStreamTranslator:
    """OpenAI chunks pass through; usage, finish reason and content are noted."""

    def __init__(self) -> None:
        self.state = StreamState()

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        # Runs once per streamed token or so: kept to a few dict look-ups.
        state = self.state
        if data == "[DONE]":
            state.extra["done"] = True
            return []
        try:
            chunk = wirejson.loads_event(data)
        except ValueError:
            raise UpstreamProtocolError(
                "The upstream sent a stream event that is not JSON."
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("The upstream sent a non-object stream event.")
        if "error" in chunk and "choices" not in chunk:
            status = _error_status(chunk["error"])
            raise UpstreamStatusError(
                _error_text(chunk), status=status, body=data.encode()
            )
        usage = chunk.get("usage")
        if usage is not None:
            state.usage = usage_from(usage) or state.usage
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    state.finish_reason = str(choice["finish_reason"])
        if not state.content_started and has_content(chunk):
            state.content_started = True
        return [chunk]

    def finish(self) -> list[dict[str, Any]]:
        return []


class OpenAIProvider:
    """Adapter for any endpoint that speaks OpenAI's chat and completions API."""

    passes_answer_through = True

    def __init__(self, *, azure: bool = False) -> None:
        self.azure = azure
        self.name = "azure" if azure else "openai"

    def build_request(
        self,
        model: ModelConfig,
        kind: Kind,
        body: Mapping[str, Any],
        *,
        stream: bool,
        api_key: str | None,
    ) -> UpstreamRequest:
        payload = dict(body)
        payload["model"] = model.upstream_model
        if stream:
            payload["stream"] = True
            options = payload.get("stream_options")
            options = dict(options) if isinstance(options, Mapping) else {}
            options["include_usage"] = True
            payload["stream_options"] = options
        else:
            payload.pop("stream", None)
            payload.pop("stream_options", None)

        headers = {"content-type": "application/json", **model.headers}
        if api_key:
            if self.azure or model.provider == "azure":
                headers["api-key"] = api_key
            else:
                headers["authorization"] = f"Bearer {api_key}"
        return UpstreamRequest(self._url(model, kind), headers, payload)

    def _url(self, model: ModelConfig, kind: Kind) -> str:
        base = (model.base_url or "").rstrip("/")
        path = _PATHS[kind]
        if not (self.azure or model.provider == "azure"):
            return f"{base}/{path}"
        # Azure addresses a deployment, not a model, and versions the API by query.
        version = model.api_version or AZURE_DEFAULT_API_VERSION
        if "/deployments/" not in base:
            base = f"{base}/openai/deployments/{model.upstream_model}"
        return f"{base}/{path}?api-version={version}"

    def parse_response(
        self, model: ModelConfig, kind: Kind, data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], Usage | None]:
        if data.get("error") is not None:
            # An error under HTTP 200: a failure of this model (retried, then
            # the next candidate), and its text, which may quote a key, stays here.
            raise UpstreamStatusError(
                "The upstream answered HTTP 200 with an error object.",
                model=model.name,
                status=502,
            )
        choices = data.get("choices")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, Mapping) for c in choices)
        ):
            raise UpstreamProtocolError(
                "The upstream answer has no 'choices' list.", model=model.name
            )
        return dict(data), usage_from(data.get("usage"))

    def stream_translator(
        self, model: ModelConfig, kind: Kind
    ) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator()

    def error_message(self, status: int, data: Any) -> str:
        if isinstance(data, Mapping):
            return _error_text(data)
        return f"The upstream answered with HTTP status {status}."


def _error_status(err: Any) -> int:
    if isinstance(err, Mapping):
        for key in ("status", "code"):
            value = err.get(key)
            if isinstance(value, int) and 400 <= value <= 599:
                return value
    return 502


def _error_text(data: Mapping[str, Any]) -> str:
    err = data.get("error")
    message: Any = None
    if isinstance(err, Mapping):
        message = err.get("message")
    elif isinstance(err, str):
        message = err
    if not isinstance(message, str) or not message:
        message = data.get("message") or data.get("detail")
    if not isinstance(message, str) or not message:
        return "The upstream reported an error without a message."
    return message[:_MAX_MESSAGE]
