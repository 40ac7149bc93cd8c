"""PII recognisers, checksums, redaction with placeholders and restoration."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from mixroute.guards.pii import (
    PiiDetector,
    Redactor,
    dni_ok,
    iban_ok,
    luhn_ok,
    ssn_ok,
    verhoeff_ok,
)

DATA = Path(__file__).parent / "data"
detector = PiiDetector()


def _found(text: str) -> list[tuple[str, str]]:
    return [(f.type, f.value) for f in detector.detect(text)]


def test_checksums_accept_published_specimens_and_reject_one_digit_off() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert iban_ok("GB82WEST12345698765432")
    assert not iban_ok("DE8937040044053201300")  # wrong length for DE
    assert verhoeff_ok("2363") and not verhoeff_ok("2364")
    assert dni_ok("12345678Z") and not dni_ok("12345678A")
    assert dni_ok("X1234567L")
    assert ssn_ok("078", "05", "1120")
    assert not ssn_ok("666", "12", "3456") and not ssn_ok("900", "12", "3456")
    assert not ssn_ok("123", "00", "4567") and not ssn_ok("123", "45", "0000")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to john.doe@example.com today", ("email", "john.doe@example.com")),
        ("call +44 20 7946 0958", ("phone", "+44 20 7946 0958")),
        ("office (212) 555-0143", ("phone", "(212) 555-0143")),
        ("card 4111 1111 1111 1111 ok", ("credit_card", "4111 1111 1111 1111")),
        ("amex 378282246310005", ("credit_card", "378282246310005")),
        ("IBAN DE89 3704 0044 0532 0130 00.", ("iban", "DE89 3704 0044 0532 0130 00")),
        ("SSN 078-05-1120", ("national_id", "078-05-1120")),
        ("NINO AB 12 34 56 C", ("national_id", "AB 12 34 56 C")),
        ("DNI 12345678Z", ("national_id", "12345678Z")),
        ("host 192.168.1.20.", ("ip_address", "192.168.1.20")),
        ("v6 2001:db8::8a2e:370:7334", ("ip_address", "2001:db8::8a2e:370:7334")),
        ("AKIAIOSFODNN7EXAMPLE", ("secret", "AKIAIOSFODNN7EXAMPLE")),
        ("key: sk-proj-abcdefghijklmnopq1", ("secret", "sk-proj-abcdefghijklmnopq1")),
        ("aws_secret_key = wJalrXUtnFEMI/K7MDE", ("secret", "wJalrXUtnFEMI/K7MDE")),
        ("DB_PASSWORD=S3cr3t!Pass#2024", ("secret", "S3cr3t!Pass#2024")),
    ],
)  # fmt: skip
def test_each_type_is_found(text: str, expected: tuple[str, str]) -> None:
    assert _found(text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "IBAN DE89 3704 0044 0532 0130 01 is mistyped",
        "SSN 666-12-3456 was never issued",
        "DNI 12345678A has the wrong letter",
        "ISBN 978-3-16-148410-0",
        "order ORD-12345678 on 2024-01-15 at 10:30:00",
        "upgrade to version 1.2.3.4 or v2.0.1.7",
        "listen on 0.0.0.0 and 127.0.0.1",
        "use std::vector and a::b",
        "token_limit: 4096, password must be 12 characters",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "user@localhost and @decorator",
    ],
)
def test_look_alikes_are_not_flagged(text: str) -> None:
    assert _found(text) == []


def test_types_can_be_limited() -> None:
    only = PiiDetector(["email"])
    assert [f.type for f in only.detect("a@b.co 4111 1111 1111 1111")] == ["email"]
    with pytest.raises(ValueError, match="unknown PII types"):
        PiiDetector(["email", "shoe_size"])


def test_findings_never_show_their_value_in_repr() -> None:
    (finding,) = detector.detect("john@example.com")
    assert "john@example.com" not in repr(finding)


def test_redaction_uses_typed_numbered_placeholders_and_restores() -> None:
    r = Redactor(detector)
    first = r.redact("Mail anna@example.com and bob@example.org, card 4111111111111111")
    second = r.redact("Again: anna@example.com")
    assert first == "Mail <EMAIL_1> and <EMAIL_2>, card <CREDIT_CARD_1>"
    assert second == "Again: <EMAIL_1>"
    assert r.types == {"email", "credit_card"}
    answer = "I wrote to <EMAIL_1>; <EMAIL_9> is not mine; card <CREDIT_CARD_1>."
    assert r.restore(answer) == (
        "I wrote to anna@example.com; <EMAIL_9> is not mine; card 4111111111111111."
    )


def test_stream_restoration_handles_placeholders_split_across_chunks() -> None:
    r = Redactor(detector)
    r.redact("x anna@example.com y 4111111111111111")
    stream = r.stream_restorer()
    chunks = ["Sent to <EM", "AIL_1", "> and <", "CREDIT_CARD_1> done <", "b>"]
    out = "".join(stream.feed(c) for c in chunks) + stream.flush()
    assert out == "Sent to anna@example.com and 4111111111111111 done <b>"
    # A lone "<" far from any placeholder is not held back for ever.
    assert stream.feed("a < b and more text that goes on") == (
        "a < b and more text that goes on"
    )


def _score(path: Path) -> tuple[float, float]:
    tp = fp = fn = 0
    for line in path.read_text("utf-8").splitlines():
        row = json.loads(line)
        gold = Counter((e["type"], e["value"]) for e in row["entities"])
        pred = Counter((f.type, f.value) for f in detector.detect(row["text"]))
        tp += sum((gold & pred).values())
        fp += sum((pred - gold).values())
        fn += sum((gold - pred).values())
    return tp / (tp + fp), tp / (tp + fn)


@pytest.mark.parametrize("name", ["pii-labelled.jsonl", "pii-handwritten.jsonl"])
def test_precision_and_recall_on_the_labelled_sets(name: str) -> None:
    precision, recall = _score(DATA / name)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_hostile_text_is_scanned_in_bounded_time() -> None:
    started = time.perf_counter()
    for text in ["a_" * 50_000, "password: " * 10_000, "1 " * 50_000, ":" * 100_000,
                 "-----BEGIN RSA PRIVATE KEY-----" * 3000, "+1 " * 30_000]:  # fmt: skip
        detector.detect(text)
    assert time.perf_counter() - started < 10
