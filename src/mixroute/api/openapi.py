"""``GET /openapi.json``: the OpenAPI 3.1 document of the gateway's endpoints.

Request bodies come from the pydantic wire models (``wire.py``), so the
document cannot drift from what the endpoints accept; every operation lists
its errors in OpenAI's shape. Fuzzers (schemathesis, issue 6) and client
generators read it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from mixroute import __version__

from .wire import ChatRequest, ClassifyRequest, CompletionRequest

_REF = "#/components/schemas/{model}"


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a rating of an earlier answer, by its request id."""

    model_config = ConfigDict(extra="allow")

    request_id: str = Field(min_length=1)
    rating: bool | float | str = Field(
        description='true/false, "up"/"down", or a score from 0 to 1.'
    )


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

# Statuses a client can cause, and those an upstream or the server can.
_ERRORS = {
    "400": "The body is malformed, or a parameter is invalid or over a limit.",
    "401": "A client key is needed (auth on) and none valid was sent.",
    "403": "The client key may not use this route or model.",
    "404": "The model, route or request id is not known.",
    "413": "The body is larger than the configured limit.",
    "429": "A rate limit or budget of the client key is used up.",
}
_UPSTREAM_ERRORS = {
    "502": "Every candidate upstream failed.",
    "503": "No upstream is available, or the server is stopping.",
    "504": "The upstream did not answer in time.",
}


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document as a JSON-ready dict."""
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for model in (ChatRequest, CompletionRequest, ClassifyRequest, FeedbackRequest):
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    responses = {
        code: {"description": text, "content": _json({"$ref": _ref("Error")})}
        for code, text in (_ERRORS | _UPSTREAM_ERRORS).items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mixroute",
            "version": __version__,
            "description": "An OpenAI-compatible gateway that routes each request "
            "to the model that fits it.",
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {"clientKey": {"type": "http", "scheme": "bearer"}},
        },
    }


def _paths() -> dict[str, Any]:
    any_object = {"type": "object"}
    completion_ok = {
        "description": "The answer; a server-sent event stream when `stream` is true.",
        "content": {
            "application/json": {"schema": any_object},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
    client = tuple(_ERRORS)
    return {
        "/v1/chat/completions": {
            "post": _op(
                "createChatCompletion",
                "Route a chat completion to the model that fits it.",
                "ChatRequest",
                completion_ok,
                (*client, *_UPSTREAM_ERRORS),
            )
        },
        "/v1/completions": {
            "post": _op(
                "createCompletion",
                "Route a legacy text completion.",
                "CompletionRequest",
                completion_ok,
                (*client, *_UPSTREAM_ERRORS),
            )
        },
        "/v1/classify": {
            "post": _op(
                "classify",
                "The route, confidence, tier and decision for a prompt, "
                "without calling a model.",
                "ClassifyRequest",
                {"description": "The classification.", "content": _json(any_object)},
                ("400", "401", "413"),
            )
        },
        "/v1/feedback": {
            "post": _op(
                "createFeedback",
                "Rate an earlier answer by its `x-request-id`.",
                "FeedbackRequest",
                {"description": "Recorded.", "content": _json(any_object)},
                ("400", "401", "404"),
            )
        },
        "/v1/models": {
            "get": _op(
                "listModels",
                "The configured models and the `auto` aliases.",
                None,
                {"description": "A list of models.", "content": _json(any_object)},
                ("401",),
            )
        },
        "/healthz": {
            "get": _probe("health", "The process is up.", ready=False),
        },
        "/readyz": {
            "get": _probe("ready", "The classifier is warm and an upstream is healthy.")
        },
    }


def _op(
    op_id: str,
    summary: str,
    body: str | None,
    ok: dict[str, Any],
    errors: tuple[str, ...],
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        # Auth is off when no client key exists, so a key is optional here.
        "security": [{"clientKey": []}, {}],
        "responses": {"200": ok}
        | {code: {"$ref": f"#/components/responses/{code}"} for code in errors},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json({"$ref": _ref(body)})}
    return op


def _probe(op_id: str, summary: str, *, ready: bool = True) -> dict[str, Any]:
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    responses: dict[str, Any] = {
        "200": {"description": "Yes.", "content": _json(status)}
    }
    if ready:
        responses["503"] = {"description": "Not yet.", "content": _json(status)}
    return {"operationId": op_id, "summary": summary, "responses": responses}


def _ref(name: str) -> str:
    return _REF.format(model=name)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def openapi_endpoint() -> Callable[[Request], Awaitable[Response]]:
    """A Starlette handler serving the document (built once, on first use)."""
    cached: list[bytes] = []

    async def openapi(request: Request) -> Response:
        if not cached:
            cached.append(json.dumps(build_openapi()).encode())
        return Response(cached[0], media_type="application/json")

    return openapi
