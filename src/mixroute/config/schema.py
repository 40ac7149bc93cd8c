"""The pydantic v2 schema of mixroute's YAML configuration.

Unknown keys are errors everywhere (``extra="forbid"``). Secrets never live in
the file: a model names the environment variable that holds its key.
String fields that say so accept ``${VAR}`` and ``${VAR:-default}``, expanded
from the environment when the config is loaded.
"""

from __future__ import annotations

from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mixroute.config.policies import PolicyRules

Tier = Literal["simple", "medium", "complex"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(Strict):
    """USD per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class Timeouts(Strict):
    """Seconds. ``read`` bounds the gap between two chunks from the upstream."""

    connect: float = Field(5.0, gt=0)
    read: float = Field(60.0, gt=0)
    total: float = Field(600.0, gt=0)


class CircuitBreakerConfig(Strict):
    failures: int = Field(5, ge=1, description="failures within window that open it")
    window_s: float = Field(30.0, gt=0)
    cooldown_s: float = Field(15.0, gt=0)


class ModelConfig(Strict):
    """One model behind one provider endpoint."""

    name: str = Field(pattern=NAME_PATTERN)
    provider: Literal["openai", "azure", "anthropic"] = "openai"
    base_url: str | None = Field(
        None, description="endpoint; ${VAR} expands; empty means not configured"
    )
    model: str | None = Field(
        None, description="the model name sent upstream; defaults to `name`"
    )
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="env var with the key"
    )
    api_version: str | None = Field(None, description="Azure OpenAI api-version")
    price: Price = Field(default_factory=Price)
    context_window: int = Field(128_000, gt=0)
    max_output_tokens: int = Field(4096, gt=0)
    capabilities: list[Literal["chat", "completions", "tools", "vision", "json"]] = [
        "chat",
        "tools",
        "json",
    ]
    local: bool = Field(False, description="runs on the user's own hardware")
    quality: float = Field(0.5, ge=0, le=1, description="prior quality score 0..1")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_retries: int = Field(2, ge=0, le=10)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra non-secret headers sent upstream"
    )

    @property
    def upstream_model(self) -> str:
        return self.model or self.name

    @property
    def configured(self) -> bool:
        return bool(self.base_url)


PiiAction = Literal["allow", "redact", "block", "route_local"]
JailbreakAction = Literal["allow", "flag", "block"]
PiiType = Literal[
    "email", "phone", "credit_card", "iban", "national_id", "ip_address", "secret"
]
PII_TYPES: tuple[PiiType, ...] = get_args(PiiType)


class RouteGuards(Strict):
    """Per-route guard policy; ``None`` means the global ``guards:`` default."""

    pii: PiiAction | None = None
    jailbreak: JailbreakAction | None = None


class GuardsConfig(Strict):
    """PII and jailbreak guards applied to prompts before they are classified."""

    pii: PiiAction = Field(
        "allow", description="allow | redact | block | route_local (default policy)"
    )
    pii_types: list[PiiType] = Field(
        default_factory=lambda: list(PII_TYPES),
        description="the PII types the guard looks for",
    )
    restore_pii: bool = Field(
        False, description="with pii: redact, put the originals back in the answer"
    )
    jailbreak: JailbreakAction = Field(
        "flag", description="allow | flag (header and log) | block (default policy)"
    )
    jailbreak_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="head probability that counts as an attack; default: the "
        "threshold the shipped head was trained with",
    )
    redact_logs: bool = Field(True, description="mask secrets and PII in all logs")


class AuthConfig(Strict):
    """Client keys. ``auth: off`` (or ``on``/``auto``) is accepted as a shorthand."""

    mode: Literal["on", "off", "auto"] = Field(
        "auto", description="auto: on once any client key was created (even if revoked)"
    )
    keys_path: str = Field(
        "mixroute-keys.sqlite", description="SQLite file holding hashed client keys"
    )
    backend: Literal["sqlite", "redis"] = Field(
        "sqlite", description="redis: the keys live in the Redis of `state:`"
    )
    cache_ttl_s: float = Field(
        5.0, ge=0, le=300, description="how long a verified key is trusted in memory"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        # YAML reads a bare on/off as a boolean.
        if isinstance(data, bool):
            return {"mode": "on" if data else "off"}
        if isinstance(data, str):
            return {"mode": data}
        if isinstance(data, dict) and isinstance(data.get("mode"), bool):
            return {**data, "mode": "on" if data["mode"] else "off"}
        return data


class LimitsConfig(Strict):
    """Request shape limits; each violation is a 400 (413 for size) naming it."""

    max_body_bytes: int | None = Field(
        None, ge=1024, description="default: server.max_body_bytes"
    )
    max_messages: int = Field(1000, ge=1)
    max_message_chars: int = Field(1_000_000, ge=1)
    max_tools: int = Field(128, ge=0)
    max_n: int = Field(8, ge=1)
    max_tokens: int | None = Field(
        None, ge=1, description="largest max_tokens a client may ask for"
    )
    rpm: int | None = Field(
        None, ge=1, description="default requests per minute per client key"
    )
    tpm: int | None = Field(
        None, ge=1, description="default tokens per minute per client key"
    )


class RouteConfig(Strict):
    """A named category of prompts with its example utterances and candidates."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    utterances: list[str] = Field(default_factory=list)
    candidates: list[str] = Field(min_length=1)
    safe_fallback: str | None = Field(
        None,
        description="candidate used when confidence is between the two thresholds; "
        "defaults to the route's last candidate",
    )
    tiers: dict[Tier, list[str]] = Field(
        default_factory=dict,
        description="optional candidates per complexity tier, ahead of `candidates`",
    )
    reasoning: bool = False
    guards: RouteGuards = Field(default_factory=RouteGuards)
    # Policy-layer fields (issue 4); all optional.
    quality: dict[str, float] = Field(
        default_factory=dict,
        description="model -> quality 0..1 on this route; default: the model's",
    )
    cost_quality: float | None = Field(
        None, ge=0, le=1, description="overrides policies.cost_quality here"
    )
    target_strong_share: float | None = Field(
        None, ge=0, le=1, description="overrides policies.target_strong_share here"
    )
    reasoning_effort: Literal["off", "low", "medium", "high"] | None = Field(
        None, description="null: 'medium' when reasoning is true, else 'off'"
    )
    max_price_per_mtok: float | None = Field(
        None, ge=0, description="cost bound (input+output USD/Mtok) for steering"
    )
    summariser: str | None = Field(
        None, description="model that condenses history that does not fit"
    )


class Thresholds(Strict):
    confident: float = Field(0.9, ge=0, le=1)
    safe: float = Field(0.7, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.safe > self.confident:
            raise ValueError(
                f"safe ({self.safe}) must not be above confident ({self.confident})"
            )
        return self


class TierThresholds(Strict):
    """Cut points on the hard-probability score (0..1) between tiers.

    Left unset, the cuts follow the trained difficulty scorer's own scale: the
    hardest ``complex_share`` of its training prompts are "complex" and the
    next ones up to ``medium_share`` are "medium" (with the untrained heuristic,
    0.35 and 0.65). Set ``medium`` / ``complex`` to fix the cut points instead.
    """

    medium: float | None = Field(None, ge=0, le=1)
    complex: float | None = Field(None, ge=0, le=1)
    medium_share: float = Field(0.4, gt=0, lt=1)
    complex_share: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> TierThresholds:
        if self.complex_share > self.medium_share:
            raise ValueError("complex_share must not be above medium_share")
        if (
            self.medium is not None
            and self.complex is not None
            and self.medium > self.complex
        ):
            raise ValueError("medium must not be above complex")
        return self


class ClassifierConfig(Strict):
    backend: Literal["auto", "onnx", "tfidf"] = Field(
        "auto", description="auto: the ONNX encoder where onnxruntime loads, else tfidf"
    )
    head: str | None = Field(
        "builtin",
        description="'builtin' (the trained head shipped with mixroute), a path to "
        "an artifact written by `mixroute train`, or null for utterances only",
    )
    max_tokens: int = Field(256, ge=16, le=512)
    max_chars: int = Field(4000, ge=64, description="window of text classified")
    threads: int = Field(1, ge=1, le=64)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    tiers: TierThresholds = Field(default_factory=TierThresholds)
    cache_size: int = Field(4096, ge=0)
    cache_dir: str | None = Field(
        None, description="embedding cache folder; default ~/.cache/mixroute"
    )


class PoliciesConfig(PolicyRules):
    """Routing policies; the rule fields live in ``config/policies.py``."""

    default_model: str = Field(description="the premium model for unsure prompts")
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="model -> models tried after it fails, after route candidates",
    )


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    ledger_path: str = Field(
        "mixroute-usage.sqlite", description="SQLite usage ledger; ':memory:' for none"
    )
    classify_workers: int = Field(2, ge=1, le=64)
    upstream_pool_size: int = Field(256, ge=1)
    cors_origins: list[str] = Field(default_factory=list)
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="on SIGTERM, how long in-flight requests may finish"
    )
    reload_poll_s: float = Field(
        1.0, ge=0, description="seconds between config file checks; 0: SIGHUP only"
    )
    gc_young_threshold: int = Field(
        50_000,
        ge=0,
        le=2**31 - 1,  # the collector takes a C int; more fails at start-up
        description="allocations between young garbage collections in "
        "`mixroute serve` (Python's default is 700, which cost about a sixth of "
        "a request's CPU); 0 keeps Python's settings",
    )


class StateConfig(Strict):
    """Where shared state lives: this process (embedded) or Redis (replicas)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="used when redis_url_env is unset or empty; no password here",
    )
    redis_url_env: str | None = Field(
        "MIXROUTE_REDIS_URL",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="env var whose URL (may carry a password) overrides redis_url",
    )
    key_prefix: str = Field("mixroute:", description="namespace of every Redis key")
    timeout_s: float = Field(0.5, gt=0, description="per Redis call; then degrade")
    fallback: bool = Field(
        True, description="serve from local memory while Redis is unreachable"
    )
    reprobe_s: float = Field(2.0, gt=0, description="how often to retry Redis")

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, raw: object) -> object:
        # Checked on the raw mapping so the error carries no copy of the URL.
        url = raw.get("redis_url") if isinstance(raw, dict) else None
        if isinstance(url, str) and urlsplit(url).password:
            raise ValueError(
                "redis_url holds a password; secrets are never written in the "
                "config: put the whole URL in the environment variable named by "
                "state.redis_url_env (MIXROUTE_REDIS_URL by default)"
            )
        return raw


class CacheConfig(Strict):
    """The semantic response cache: exact match, then embedding similarity."""

    enabled: bool = False
    backend: Literal["auto", "memory", "redis"] = Field(
        "auto", description="auto: the state backend"
    )
    ttl_s: float = Field(3600.0, gt=0)
    max_entries: int = Field(10_000, ge=1, description="LRU-evicted beyond this")
    max_entries_per_scope: int = Field(
        1000, ge=1, description="bound of one tenant+model+parameters set"
    )
    similarity: float = Field(
        0.95, ge=0, le=1, description="cosine at or above which a prompt is a hit"
    )
    route_similarity: dict[str, float | None] = Field(
        default_factory=dict,
        description="per-route threshold; null means exact matches only",
    )
    cache_sampled: bool = Field(
        False, description="also store answers to temperature > 0 requests"
    )


class TracingConfig(Strict):
    """OpenTelemetry spans, exported with OTLP over HTTP; off when no endpoint."""

    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces"
    )
    service_name: str = "mixroute"
    sample_ratio: float = Field(1.0, ge=0, le=1)


class ObservabilityConfig(Strict):
    """Metrics, logs, tracing and the dashboard (``mixroute.obs``)."""

    metrics: bool = Field(True, description="serve Prometheus metrics at /metrics")
    dashboard: bool = Field(True, description="serve the live page at /dashboard")
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    tracing: TracingConfig = Field(default_factory=TracingConfig)


class MixrouteConfig(Strict):
    version: Literal[1] = 1
    models: list[ModelConfig] = Field(min_length=1)
    routes: list[RouteConfig] = Field(min_length=1)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    policies: PoliciesConfig
    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for m in models:
            if m.name in seen or m.name == "auto" or m.name.startswith("auto:"):
                raise ValueError(f'model name "{m.name}" is duplicated or reserved')
            seen.add(m.name)
        return models

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def route(self, name: str) -> RouteConfig:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def route_names(self) -> list[str]:
        return [r.name for r in self.routes]
