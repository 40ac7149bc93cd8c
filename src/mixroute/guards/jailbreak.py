"""Jailbreak and prompt-injection detection: pattern rules plus a linear head.

The rules catch the well-known phrasings (override earlier instructions, ask
for the system prompt, switch to an "unrestricted" persona, fake role markers)
in several languages. The head is a logistic regression on the same MiniLM
embeddings the classifier uses, trained offline by ``bench/train_jailbreak.py``
and shipped as ``guards/data/jailbreak-head.npz``; its SHA-256 is checked when
it is loaded. Without an encoder the guard runs on the rules alone.

The head runs only where the rules leave doubt: a turn no rule matched but
that a broad word screen flags (see ``JailbreakDetector``), so ordinary
requests pay microseconds, not an encoder pass.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mixroute.errors import ConfigError

Embed = Callable[[list[str]], np.ndarray]
HEAD_FILE = "jailbreak-head.npz"
#: SHA-256 of the shipped head; ``bench/train_jailbreak.py`` prints the new one.
HEAD_SHA256 = "3b93d4926b0813f1af08f3193dfcb52c09292faebc62fa3dc1a7c3076bcbd182"
# Only this much of a prompt is embedded: attacks state themselves early, and
# the rules still see the whole text.
_WINDOW_CHARS = 2000
_RULE_WINDOW_CHARS = 20_000
_BATCH = 32

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        (
            "override_instructions",
            r"\b(?:ignore|disregard|forget|skip|override|bypass)\b[\w\s,'-]{0,30}?"
            r"\b(?:previous|prior|preceding|above|earlier|original|initial|system|"
            r"all(?: of)? (?:the|your)|your)\b[\w\s-]{0,20}?"
            r"\b(?:instructions?|directions?|rules|guidelines|prompts?|polic(?:y|ies)|"
            r"orders|programming|restrictions)\b",
        ),
        (
            "reveal_prompt",
            r"\b(?:reveal|show|print|repeat|output|dump|quote|leak|display|tell me)\b"
            r"[\w\s,'-]{0,30}?\b(?:system (?:prompt|message)|initial (?:prompt|"
            r"instructions)|hidden (?:instructions|prompt|context)|developer message|"
            r"your (?:instructions|prompt|rules|configuration)|context window)\b",
        ),
        (
            "unrestricted_persona",
            r"\b(?:you are|you're|act as|pretend (?:you are|to be)|roleplay as|"
            r"from now on,? you)\b[^.!?\n]{0,80}?\b(?:DAN|do anything now|"
            r"jailbr[oe]ken|unrestricted|unfiltered|uncensored|no (?:rules|"
            r"restrictions|filters|guidelines|limits)|without (?:any )?(?:rules|"
            r"restrictions|filters|guidelines|limits))\b",
        ),
        (
            "mode_switch",
            r"\b(?:developer|god|jailbreak|unrestricted|maintenance|opposite|dan) "
            r"mode(?: is)?(?: now)? (?:on|enabled|activated|engaged)\b"
            r"|\b(?:enable|enter|activate)\s+(?:developer|god|jailbreak|dan) mode\b"
            r"|\b(?:you(?:'re| are) (?:now )?in|in this) (?:developer|god|jailbreak|"
            r"unrestricted|opposite) mode\b",
        ),
        (
            "disable_safety",
            r"\b(?:disable|turn off|bypass|remove|ignore|deactivate)\b[\w\s-]{0,25}?"
            r"\b(?:safety|content) (?:filters?|guidelines|protocols|policy|"
            r"moderation|training|rules)\b|\bguardrails\b[\w\s-]{0,20}\b(?:off|"
            r"disabled)\b|\bsafety (?:protocols|filters) (?:are )?(?:off|disabled)\b",
        ),
        (
            "fake_role_marker",
            r"<\|im_start\|>\s*system|\[/?system\]|^\s*#{2,}\s*(?:system|instruction)"
            r"\b|\bnew system (?:prompt|message)\b|\bsystem override\b|"
            r"\bend of (?:user )?input\b",
        ),
        (
            "injected_instruction",
            r"\b(?:AI|assistant|language model|LLM|AI agents?)s?\b[^.\n]{0,40}?"
            r"(?:reading|processing|summari[sz]ing) this\b|\b(?:important )?new "
            r"instructions? for the (?:AI|assistant|model)\b|\bhidden instruction "
            r"for (?:language )?models?\b",
        ),
        (
            "multilingual_override",
            r"\bignora (?:todas las|tutte le) (?:instrucciones|istruzioni) "
            r"(?:anteriores|precedenti)\b|\bignore toutes les instructions "
            r"pr[ée]c[ée]dentes\b|\bignoriere alle (?:vorherigen )?anweisungen\b|"
            r"\bignore todas as instru[çc][õo]es anteriores\b|\bvergiss alle regeln\b"
            r"|\bsin filtros ni reglas\b|\bsans aucune restriction\b",
        ),
    )
)


# Words that attacks the rules miss still tend to use. A turn with none of
# them is not worth an encoder pass: benign traffic then costs only the rules.
# Kept broad on purpose (false hits only cost time, misses cost recall); built
# on the train split of tests/guards/data/jailbreak-labelled.jsonl. Looked up
# as a set of words and a tuple of prefixes: one big regex alternation took
# milliseconds on a 2 kB prompt.
_SCREEN_WORDS = frozenset(
    "disregard forget bypass system prompt rule rules policy policies dan stan "
    "aim pretend roleplay character persona mode guardrail guardrails safety "
    "moderation reveal repeat verbatim above hidden confidential secret secrets "
    "developer root operator ai assistant llm evil rogue malware keylogger "
    "illegal napalm base64 decode execute fictional hypothetical imagine story "
    "novel free freed comply obey norms memory dump context unfiltered "
    "uncensored forbidden approved authorised authorized permission privilege "
    "privileges precedence sandbox original instead guideline guidelines regeln "
    "reglas sistema système systeme".split()
)
_SCREEN_PREFIXES = (
    "ignor", "overrid", "instru", "filt", "restric", "censor", "jailbr", "admin",
    "hack", "exploit", "steal", "launder", "weapon", "password", "exfiltrat",
    "simulat", "refus", "limit", "supersed", "ethic", "anweisung", "einschr",
    "istruzion", "restrizion",
)  # fmt: skip
_SCREEN_PHRASES = (
    "act as", "acting as", "role-play", "word for word", "terms of use",
    "api key", "language model",
)  # fmt: skip
_WORDS = re.compile(r"\w+")
# Obfuscation: l33t spelling and letter-by-letter hyphenation.
_OBFUSCATED = re.compile(r"[a-z]\d+[a-z]|\b(?:\w-){3,}\w\b", re.IGNORECASE)


def screen(text: str) -> bool:
    """Whether ``text`` has anything that calls for the head (cheap, rules-level)."""
    low = _rule_window(text).lower()
    words = set(_WORDS.findall(low))
    if not words.isdisjoint(_SCREEN_WORDS):
        return True
    if any(w.startswith(_SCREEN_PREFIXES) for w in words):
        return True
    if any(p in low for p in _SCREEN_PHRASES):
        return True
    return _OBFUSCATED.search(low) is not None


def _rule_window(text: str) -> str:
    # The rules cost a few microseconds per character on hostile input, so a
    # huge turn is judged by its beginning and its end, where instructions sit.
    if len(text) <= 2 * _RULE_WINDOW_CHARS:
        return text
    return text[:_RULE_WINDOW_CHARS] + "\n" + text[-_RULE_WINDOW_CHARS:]


@dataclass(frozen=True)
class JailbreakVerdict:
    """The guard's view of one prompt: the rule that fired, the head's score."""

    probability: float
    pattern: str | None
    attack: bool
    #: The head was asked not to run (``score_many(..., head=False)``) on a
    #: turn it would have judged: score again with the head before deciding.
    pending: bool = False


def match_rules(text: str) -> str | None:
    """The name of the first rule ``text`` matches, or ``None``."""
    for name, pattern in _RULES:
        if pattern.search(text):
            return name
    return None


@dataclass(frozen=True)
class LinearHead:
    """Logistic regression on unit-norm embeddings: ``sigmoid(x·w + b)``."""

    weights: np.ndarray
    bias: float
    encoder_id: str
    threshold: float = 0.5

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        z = embeddings @ self.weights + self.bias
        out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        return out

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            weights=self.weights.astype(np.float32),
            bias=np.array([self.bias], dtype=np.float64),
            threshold=np.array([self.threshold], dtype=np.float64),
            encoder_id=np.array(self.encoder_id),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearHead:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(
                weights=z["weights"].astype(np.float32),
                bias=float(z["bias"][0]),
                threshold=float(z["threshold"][0]),
                encoder_id=str(z["encoder_id"]),
            )


def load_head(path: Path | None = None, sha256: str | None = None) -> LinearHead:
    """The shipped head (or the one at ``path``), checked against its SHA-256.

    Raises ``ConfigError`` when the file is missing or its digest differs.
    """
    if path is None:
        data = (resources.files("mixroute.guards") / "data" / HEAD_FILE).read_bytes()
        expected = HEAD_SHA256 if sha256 is None else sha256
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError([f"guards: jailbreak head {path}: {exc}"]) from None
        expected = sha256 or ""
    digest = hashlib.sha256(data).hexdigest()
    if expected and digest != expected:
        raise ConfigError(
            [
                f"guards: the jailbreak head has SHA-256 {digest}, expected "
                f"{expected}; reinstall mixroute or retrain with "
                "bench/train_jailbreak.py"
            ]
        )
    return LinearHead.from_bytes(data)


class JailbreakDetector:
    """Scores prompts; a rule match or a head probability at the threshold is an
    attack. ``embed`` is the classifier's encoder; ``None`` means rules only.

    The encoder is the costly part (milliseconds per prompt against
    microseconds for the rules), so with ``screened`` (the default) the head
    runs only on turns no rule matched that still contain a word attacks use
    (see ``screen``): ordinary prompts cost the rules and one regex scan, and
    never add an encoder pass to the classifier's. Pass ``screened=False`` to
    score every turn with the head.
    """

    def __init__(
        self,
        head: LinearHead | None = None,
        embed: Embed | None = None,
        threshold: float | None = None,
        screened: bool = True,
    ) -> None:
        if head is not None and embed is None:
            head = None
        self.head = head
        self.embed = embed
        self.screened = screened
        self.threshold = (
            threshold
            if threshold is not None
            else (head.threshold if head is not None else 0.5)
        )

    @classmethod
    def load(
        cls, embed: Embed | None = None, threshold: float | None = None
    ) -> JailbreakDetector:
        """The shipped head on the bundled encoder (built here if not given)."""
        if embed is None:
            from mixroute.classify.encoder import OnnxEncoder

            embed = OnnxEncoder().embed
        return cls(load_head(), embed, threshold)

    def score_many(
        self, texts: Sequence[str], head: bool = True
    ) -> list[JailbreakVerdict]:
        """One verdict per text; CPU-bound, so call it off the event loop.

        With ``head=False`` only the rules and the screen run (microseconds on
        a short text, fine on the loop); a turn the head would judge comes back
        ``pending``."""
        patterns = [match_rules(_rule_window(t)) for t in texts]
        probs = [0.0] * len(texts)
        # The head only judges what the rules left open: a rule hit is already
        # an attack, and a turn the screen finds nothing in is not worth an
        # encoder pass (unless ``screened`` is off).
        todo = [
            i
            for i, (t, rule) in enumerate(zip(texts, patterns, strict=True))
            if rule is None and (not self.screened or screen(t))
        ]
        if self.head is not None and self.embed is not None and todo and not head:
            waiting = set(todo)
            return [
                JailbreakVerdict(0.0, rule, rule is not None, pending=i in waiting)
                for i, rule in enumerate(patterns)
            ]
        if self.head is not None and self.embed is not None and todo:
            windows = [texts[i][:_WINDOW_CHARS] for i in todo]
            # Small batches: padding a big one to its longest text costs
            # memory in proportion to batch x tokens^2.
            vectors = np.vstack(
                [
                    self.embed(windows[i : i + _BATCH])
                    for i in range(0, len(windows), _BATCH)
                ]
            )
            for i, p in zip(todo, self.head.probabilities(vectors), strict=True):
                probs[i] = float(p)
        return [
            JailbreakVerdict(p, rule, rule is not None or p >= self.threshold)
            for p, rule in zip(probs, patterns, strict=True)
        ]

    def score(self, text: str, head: bool = True) -> JailbreakVerdict:
        return self.score_many([text], head)[0]
