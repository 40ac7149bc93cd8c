"""OpenAI-shaped request bodies → Anthropic Messages API requests (no I/O).

Request fields, by what happens to them:

- translated: ``messages`` (system and developer messages, in order, become the
  top-level ``system``; consecutive turns of one role are merged because
  Anthropic requires alternation; ``tool`` messages become ``tool_result``
  blocks in a user turn), ``tools``, ``tool_choice``, ``parallel_tool_calls``,
  ``stop``, ``max_tokens`` / ``max_completion_tokens`` (default: the model's
  ``max_output_tokens``, because Anthropic requires it), ``temperature``
  (clamped to Anthropic's 0..1), ``top_p``, ``top_k``, ``user``
  (``metadata.user_id``) and, for the legacy completions kind, ``prompt``;
- passed on: Anthropic's own ``thinking`` (the policy sets it for reasoning
  routes). Anthropic forbids thinking with forced tool use, an assistant
  prefill, or in a tool loop whose earlier thinking blocks an OpenAI client
  cannot send back, so there it is left out; where it is sent, ``temperature``,
  ``top_p`` and ``top_k`` are left out instead, and the budget is kept below
  ``max_tokens``;
- dropped, because the answer keeps its meaning without them: ``stream_options``
  (Anthropic always streams usage), ``n: 1``, ``logprobs: false``,
  ``response_format: {"type": "text"}``, ``frequency_penalty``,
  ``presence_penalty``, ``logit_bias``, ``seed``, ``store``, ``metadata``,
  ``service_tier``, ``reasoning_effort``, ``prediction``, a tool's ``strict``,
  a message's ``name``, an image's ``detail`` and any field this module does
  not know;
- rejected with ``ClientError`` (400), because the client would get a different
  shape than it asked for: ``n > 1``, ``logprobs`` / ``top_logprobs``, JSON
  ``response_format``, audio, legacy ``functions`` / ``function_call``, and for
  completions ``echo``, ``suffix`` and ``best_of > 1``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from mixroute.config.schema import ModelConfig
from mixroute.errors import ClientError
from mixroute.providers.base import Kind

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),(.*)$", re.DOTALL)


def translate_request(
    body: Mapping[str, Any], model: ModelConfig, kind: Kind
) -> dict[str, Any]:
    """The Messages API JSON body for an OpenAI chat or legacy completions body.

    Raises ``ClientError`` (400, ``param`` naming the field) for a request
    Anthropic cannot express.
    """
    if kind == "completions":
        return _translate_completion(body, model)
    return _translate_chat(body, model)


def messages_url(base_url: str) -> str:
    """``{base_url}/v1/messages``, without doubling a trailing ``/v1``."""
    base = base_url.rstrip("/")
    if base.endswith("/v1/messages"):
        return base
    if base.endswith("/v1"):
        return base + "/messages"
    return base + "/v1/messages"


def _translate_chat(body: Mapping[str, Any], model: ModelConfig) -> dict[str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ClientError("`messages` must be a non-empty list.", param="messages")
    system, turns = _translate_messages(messages)
    if not turns:
        raise ClientError(
            "Anthropic models need at least one non-empty user or assistant "
            "message besides the system prompt.",
            param="messages",
        )
    for key in ("functions", "function_call"):
        if body.get(key) is not None:
            raise ClientError(
                f"The legacy `{key}` field is not supported for Anthropic models; "
                "use `tools` and `tool_choice`.",
                param=key,
            )
    _reject_shape_changes(body)

    payload: dict[str, Any] = {"model": _model_name(body, model)}
    if system:
        payload["system"] = system
    payload["messages"] = turns
    _apply_sampling(body, model, payload)
    _apply_tools(body, payload)
    _apply_thinking(body, payload)
    return payload


def _translate_completion(
    body: Mapping[str, Any], model: ModelConfig
) -> dict[str, Any]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ClientError(
            "`prompt` must be one non-empty string for Anthropic models.",
            param="prompt",
        )
    if body.get("echo"):
        raise ClientError("`echo` is not supported for Anthropic models.", param="echo")
    if body.get("suffix"):
        raise ClientError(
            "`suffix` is not supported for Anthropic models.", param="suffix"
        )
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise ClientError(
            "`best_of` other than 1 is not supported for Anthropic models.",
            param="best_of",
        )
    _reject_shape_changes(body)

    payload: dict[str, Any] = {
        "model": _model_name(body, model),
        "messages": [{"role": "user", "content": [_text(prompt)]}],
    }
    _apply_sampling(body, model, payload)
    return payload


def _model_name(body: Mapping[str, Any], model: ModelConfig) -> str:
    name = body.get("model")
    return name if isinstance(name, str) and name else model.upstream_model


def _reject_shape_changes(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise ClientError(
            f"`n` = {n!r} is not supported: Anthropic models return one choice.",
            param="n",
        )
    if body.get("logprobs") or body.get("top_logprobs"):
        raise ClientError(
            "`logprobs` are not available from Anthropic models.", param="logprobs"
        )
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, Mapping) and fmt.get("type") == "text"):
        raise ClientError(
            "`response_format` other than text is not supported for Anthropic models; "
            "pick a model with the json capability.",
            param="response_format",
        )
    modalities = body.get("modalities")
    if body.get("audio") is not None or (
        isinstance(modalities, list) and "audio" in modalities
    ):
        raise ClientError(
            "Audio output is not supported for Anthropic models.", param="modalities"
        )


def _apply_sampling(
    body: Mapping[str, Any], model: ModelConfig, payload: dict[str, Any]
) -> None:
    key = "max_completion_tokens"
    if body.get(key) is None:
        key = "max_tokens"
    max_tokens = body.get(key)
    if max_tokens is None:
        max_tokens = model.max_output_tokens
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise ClientError(f"`{key}` must be an integer.", param=key)
    elif max_tokens < 1:
        raise ClientError(f"`{key}` must be at least 1, not {max_tokens}.", param=key)
    payload["max_tokens"] = max_tokens

    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        # OpenAI accepts 0..2, Anthropic 0..1: above 1 means "as varied as
        # the model allows", which is Anthropic's 1.
        payload["temperature"] = min(temperature, 1.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p is not None:
        payload["top_p"] = top_p
    top_k = body.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        payload["top_k"] = top_k

    stops = _stop_sequences(body.get("stop"))
    if stops:
        payload["stop_sequences"] = stops
    user = body.get("user")
    if isinstance(user, str) and user:
        payload["metadata"] = {"user_id": user}


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClientError(f"`{key}` must be a number.", param=key)
    if not low <= value <= high:
        raise ClientError(
            f"`{key}` must be between {low:g} and {high:g}, not {value}.", param=key
        )
    return float(value)


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ClientError("`stop` must be a string or a list of strings.", param="stop")
    stops = [s for s in stops if s]
    for s in stops:
        if not s.strip():
            # Anthropic refuses whitespace-only stop sequences; say so before
            # spending a round trip.
            raise ClientError(
                f"`stop` sequence {s!r} is only whitespace, which Anthropic models "
                "do not accept.",
                param="stop",
            )
    return stops


def _apply_thinking(body: Mapping[str, Any], payload: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, Mapping) or not isinstance(thinking.get("type"), str):
        raise ClientError("`thinking` must be an object with a type.", param="thinking")
    thinking = dict(thinking)
    if thinking["type"] == "disabled":
        payload["thinking"] = thinking
        return
    if _thinking_forbidden(payload):
        return
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
            raise ClientError(
                "`thinking.budget_tokens` must be an integer of at least 1024.",
                param="thinking.budget_tokens",
            )
        room = payload["max_tokens"] - 1
        if room < 1024:
            # No budget Anthropic accepts fits below max_tokens: answer plainly.
            return
        thinking["budget_tokens"] = min(budget, room)
    for key in ("temperature", "top_p", "top_k"):
        payload.pop(key, None)
    payload["thinking"] = thinking


def _thinking_forbidden(payload: Mapping[str, Any]) -> bool:
    choice = payload.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") in ("any", "tool"):
        return True
    last = payload["messages"][-1]
    if last["role"] == "assistant":
        return True
    # A user turn opening with tool results continues a tool loop; Anthropic
    # wants the thinking blocks of the turn that called the tools back, and
    # OpenAI's message format has no place for them.
    return bool(last["content"][0]["type"] == "tool_result")


def _apply_tools(body: Mapping[str, Any], payload: dict[str, Any]) -> None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools:
        if choice is None or choice in ("auto", "none"):
            return
        raise ClientError("`tool_choice` needs `tools`.", param="tool_choice")
    if not isinstance(tools, list):
        raise ClientError("`tools` must be a list.", param="tools")

    translated = [_tool_definition(tool, i) for i, tool in enumerate(tools)]
    names = {t["name"] for t in translated}
    tool_choice: dict[str, Any] | None
    if choice is None:
        tool_choice = None
    elif choice == "auto":
        tool_choice = {"type": "auto"}
    elif choice == "required":
        tool_choice = {"type": "any"}
    elif choice == "none":
        tool_choice = {"type": "none"}
    else:
        function = choice.get("function") if isinstance(choice, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or name not in names:
            raise ClientError(
                "`tool_choice` must be auto, required, none or "
                '{"type": "function", "function": {"name": ...}} naming one of '
                "the `tools`.",
                param="tool_choice",
            )
        tool_choice = {"type": "tool", "name": name}
    if body.get("parallel_tool_calls") is False:
        tool_choice = tool_choice or {"type": "auto"}
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True

    payload["tools"] = translated
    if tool_choice is not None:
        payload["tool_choice"] = tool_choice


def _tool_definition(tool: Any, i: int) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, Mapping) else None
    if (
        not isinstance(tool, Mapping)
        or tool.get("type", "function") != "function"
        or not isinstance(function, Mapping)
        or not isinstance(function.get("name"), str)
    ):
        raise ClientError(
            f"`tools[{i}]` must be a function tool with a name.", param=f"tools[{i}]"
        )
    schema = function.get("parameters")
    if not isinstance(schema, Mapping):
        schema = {"type": "object", "properties": {}}
    definition: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        definition["description"] = function["description"]
    definition["input_schema"] = dict(schema)
    return definition


# Messages ------------------------------------------------------------------


def _translate_messages(
    messages: list[Any],
) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ClientError(
                f"`messages[{i}]` must be an object.", param=f"messages[{i}]"
            )
        role = message.get("role")
        if role in ("system", "developer"):
            text = _plain_text(message.get("content"), i)
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), i)
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, i)]
        else:
            raise ClientError(
                f"`messages[{i}].role` {role!r} is not one of system, developer, "
                "user, assistant or tool.",
                param=f"messages[{i}].role",
            )
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for turn in turns:
        if turn["role"] == "user":
            # Anthropic wants a turn's tool results ahead of any other content.
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    if turns and turns[-1]["role"] == "assistant":
        # A final assistant turn is a prefill, which may not end in whitespace.
        last = turns[-1]["content"][-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
            if not last["text"]:
                turns[-1]["content"].pop()
                if not turns[-1]["content"]:
                    turns.pop()
    return "\n\n".join(system), turns


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _parts(content: Any, i: int) -> list[Mapping[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(p, Mapping) for p in content):
        return content
    raise ClientError(
        f"`messages[{i}].content` must be a string or a list of content parts.",
        param=f"messages[{i}].content",
    )


def _plain_text(content: Any, i: int) -> str:
    texts: list[str] = []
    for j, part in enumerate(_parts(content, i)):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ClientError(
                f"`messages[{i}].content[{j}]` must be a text part here.",
                param=f"messages[{i}].content[{j}]",
            )
        texts.append(part["text"])
    return "\n".join(t for t in texts if t)


def _user_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(_parts(content, i)):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append(_text(part["text"]))
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), i, j))
        else:
            raise ClientError(
                f"`messages[{i}].content[{j}]` of type {kind!r} is not supported "
                "for Anthropic models (text and image_url are).",
                param=f"messages[{i}].content[{j}]",
            )
    return blocks


def _image_block(image: Any, i: int, j: int) -> dict[str, Any]:
    where = f"messages[{i}].content[{j}].image_url"
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise ClientError(f"`{where}` must carry a url.", param=where)
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    match = _DATA_URL.match(url)
    if match is None:
        raise ClientError(
            f"`{where}.url` must be an http(s) URL or a base64 data URL.", param=where
        )
    media_type = match.group(1).lower()
    if ";base64" not in match.group(2).lower():
        raise ClientError(f"`{where}.url` must be base64-encoded.", param=where)
    if media_type not in IMAGE_MEDIA_TYPES:
        raise ClientError(
            f"`{where}` has media type {media_type!r}; Anthropic models accept "
            + ", ".join(sorted(IMAGE_MEDIA_TYPES))
            + ".",
            param=where,
        )
    source = {"type": "base64", "media_type": media_type, "data": match.group(3)}
    return {"type": "image", "source": source}


def _assistant_blocks(message: Mapping[str, Any], i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(_parts(message.get("content"), i)):
        text = part.get("text", part.get("refusal"))
        if part.get("type") not in ("text", "refusal") or not isinstance(text, str):
            raise ClientError(
                f"`messages[{i}].content[{j}]`: assistant messages may only hold "
                "text for Anthropic models.",
                param=f"messages[{i}].content[{j}]",
            )
        if text:
            blocks.append(_text(text))

    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ClientError(
            f"`messages[{i}].tool_calls` must be a list.",
            param=f"messages[{i}].tool_calls",
        )
    for k, call in enumerate(calls):
        blocks.append(_tool_use_block(call, i, k))
    return blocks


def _tool_use_block(call: Any, i: int, k: int) -> dict[str, Any]:
    where = f"messages[{i}].tool_calls[{k}]"
    function = call.get("function") if isinstance(call, Mapping) else None
    if (
        not isinstance(call, Mapping)
        or not isinstance(call.get("id"), str)
        or not isinstance(function, Mapping)
        or not isinstance(function.get("name"), str)
    ):
        raise ClientError(
            f"`{where}` must have an id and a function with a name.", param=where
        )
    arguments = function.get("arguments")
    if isinstance(arguments, Mapping):
        parsed: Any = dict(arguments)
    elif arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        parsed = {}
    else:
        try:
            parsed = json.loads(arguments)
        except (TypeError, ValueError):
            parsed = None
    if not isinstance(parsed, dict):
        raise ClientError(
            f"`{where}.function.arguments` in message {i} is not a JSON object, "
            "which Anthropic models need as tool input.",
            param=f"{where}.function.arguments",
        )
    return {
        "type": "tool_use",
        "id": call["id"],
        "name": function["name"],
        "input": parsed,
    }


def _tool_result(message: Mapping[str, Any], i: int) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise ClientError(
            f"`messages[{i}]` (role tool) needs a `tool_call_id`.",
            param=f"messages[{i}].tool_call_id",
        )
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    text = _plain_text(message.get("content"), i)
    if text:
        block["content"] = text
    return block
