"""What a classifier returns, and the interface every backend meets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Tier = Literal["simple", "medium", "complex"]


@dataclass(frozen=True)
class Classification:
    """The route, calibrated confidence and complexity tier found for a prompt.

    ``confidence`` is a probability (0..1) that ``route`` is right, not a raw
    cosine; ``scores`` holds that probability for every route. ``hard_probability``
    is the estimated chance that a cheap model fails the prompt (0..1), from
    which ``tier`` is cut.
    """

    route: str
    confidence: float
    tier: Tier
    scores: Mapping[str, float] = field(default_factory=dict)
    hard_probability: float = 0.5
    backend: str = ""
    latency_ms: float = 0.0


class Classifier(Protocol):
    """Text in, ``Classification`` out. Thread-safe; CPU-bound; never async."""

    routes: Sequence[str]
    backend: str

    def classify(self, text: str) -> Classification: ...

    def classify_messages(
        self, messages: Sequence[Mapping[str, object]]
    ) -> Classification:
        """Classify an OpenAI ``messages`` list (last user turn, earlier as context)."""
        ...

    def lookup_messages(
        self, messages: Sequence[Mapping[str, object]]
    ) -> Classification | None:
        """The cached classification of ``messages``, or None; computes nothing,
        so it is cheap enough for the event loop."""
        ...

    def embed(self, texts: Sequence[str]) -> object:
        """Unit-norm embeddings (numpy array, one row per text) for the cache."""
        ...
