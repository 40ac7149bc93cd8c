"""Tracing: off by default at no cost (opentelemetry never imported); with a
span processor, one trace per request with classify, policy, cache and one
span per upstream attempt under the request span."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from obs_helpers import FAST_RETRY, in_process, obs_config
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from fakes import FakeUpstream, Reply, StubClassifier
from mixroute.api.app import build_gateway, create_app
from mixroute.config.schema import TracingConfig
from mixroute.errors import ConfigError
from mixroute.obs import Observer
from mixroute.obs.tracing import NoopTracer, build_tracer

# Runs without the opentelemetry packages (as a core install would) and notes
# any attempt by mixroute's own code to import them (the redis client probes
# for them by itself, and copes when they are missing).
_PROBE = """
import sys, traceback
tried = []
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            frames = [f.filename for f in traceback.extract_stack()[:-1]]
            importer = [f for f in frames if not f.startswith("<frozen")][-1]
            if "/mixroute/" in importer:
                tried.append(importer)
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Block())
from mixroute.config import load_config
import mixroute.api.app
from mixroute.obs import Observer
obs = Observer(load_config(None))
a, b = obs.span("x"), obs.span("y", {"k": 1})
assert a is b and not obs.tracer.enabled
with a:
    pass
print(sorted(set(tried)))
"""


def test_off_by_default_imports_nothing() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert isinstance(build_tracer(TracingConfig()), NoopTracer)


async def test_spans_for_one_request(
    fakes: dict[str, FakeUpstream], urls: dict[str, str]
) -> None:
    exporter = InMemorySpanExporter()
    tracer = build_tracer(TracingConfig(), processor=SimpleSpanProcessor(exporter))
    config = obs_config(
        urls,
        policies={"default_model": "large", "fallbacks": {"small": ["medium"]}},
        cache={"enabled": True, "route_similarity": {"chat": None}},
    )
    gw = build_gateway(
        config,
        classifier=StubClassifier(),
        retry=FAST_RETRY,
        obs=Observer(config, tracer=tracer),
    )
    app = create_app(config, gateway=gw)
    fakes["small"].push(Reply(kind="status", status=500))
    body = {"model": "auto:chat", "messages": [{"role": "user", "content": "hi"}]}
    async with in_process(app) as client:
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.headers["x-mixroute-fallbacks"] == "1"
        first = exporter.get_finished_spans()
        exporter.clear()
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 200
        second = exporter.get_finished_spans()
        metrics = (await client.get("/metrics")).text
    tracer.shutdown()

    names = [s.name for s in first]
    assert names.count("mixroute.upstream") == 2  # small failed, then medium
    assert {"mixroute.request", "mixroute.policy", "mixroute.cache"} <= set(names)
    root = next(s for s in first if s.name == "mixroute.request")
    assert root.parent is None
    for s in first:
        if s is not root:
            assert s.parent is not None and s.parent.span_id == root.context.span_id
            assert s.context.trace_id == root.context.trace_id
    models = [s.attributes["model"] for s in first if s.name == "mixroute.upstream"]
    assert models == ["small", "medium"]
    assert "mixroute.classify" in [s.name for s in second]  # model auto classifies
    assert 'mixroute_cache_lookups_total{result="miss"}' in metrics


def _has_exporter() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(_has_exporter(), reason="the OTLP exporter is installed here")
def test_endpoint_without_exporter_is_a_clear_error() -> None:
    cfg = TracingConfig(otlp_endpoint="http://127.0.0.1:4318/v1/traces")
    with pytest.raises(ConfigError, match=r"mixroute\[otel\]"):
        build_tracer(cfg)
