"""PII detection and redaction with tight patterns and check digits.

Each recogniser is a regular expression for the shape plus, where the format
has one, a checksum (Luhn for cards, ISO 7064 mod 97 for IBANs, Verhoeff for
Aadhaar, the check letter for Spanish DNI/NIE) or the issuer's validity rules
(US SSN ranges, UK NINO prefixes). A candidate that fails its check is not
reported: order numbers, ISBNs and mistyped cards stay in the prompt.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mixroute.config.schema import PII_TYPES, PiiType

PLACEHOLDER_PREFIX = {
    "email": "EMAIL",
    "phone": "PHONE",
    "credit_card": "CREDIT_CARD",
    "iban": "IBAN",
    "national_id": "NATIONAL_ID",
    "ip_address": "IP_ADDRESS",
    "secret": "SECRET",
}
PLACEHOLDER = re.compile(
    r"<(?:EMAIL|PHONE|CREDIT_CARD|IBAN|NATIONAL_ID|IP_ADDRESS|SECRET)_\d+>"
)
# When two findings overlap, the one with the stronger check wins.
_PRIORITY = {
    "secret": 0,
    "credit_card": 1,
    "iban": 2,
    "national_id": 3,
    "email": 4,
    "ip_address": 5,
    "phone": 6,
}


@dataclass(frozen=True)
class PiiFinding:
    """One detected item. ``value`` is the original text: never log it."""

    type: PiiType
    kind: str
    start: int
    end: int
    value: str = field(repr=False)


# --- check digits -----------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    """Country length and the ISO 13616 mod-97 check."""
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6], [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]  # fmt: skip
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2], [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]  # fmt: skip


def verhoeff_ok(digits: str) -> bool:
    """The Verhoeff dihedral check (used by India's Aadhaar)."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_ok(text: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter)."""
    s = text.replace("-", "").upper()
    if s[0] in "XYZ":
        s = str("XYZ".index(s[0])) + s[1:]
    return s[:-1].isdigit() and _DNI_LETTERS[int(s[:-1]) % 23] == s[-1]


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """US SSN ranges never issued: area 000, 666, 900-999; group 00; serial 0000."""
    return (
        area not in ("000", "666")
        and area[0] != "9"
        and group != "00"
        and serial != "0000"
    )


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(n / len(s) * math.log2(n / len(s)) for n in counts.values())


# --- recognisers ------------------------------------------------------------

Check = Callable[[re.Match[str]], str | None]  # returns the kind, or None


@dataclass(frozen=True)
class _Recogniser:
    type: PiiType
    pattern: re.Pattern[str]
    check: Check
    group: int = 0


def _kind(name: str) -> Check:
    return lambda m: name


def _card(m: re.Match[str]) -> str | None:
    raw = m.group(0)
    digits = re.sub(r"[ -]", "", raw)
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 2 or not luhn_ok(digits):
        return None
    seps = re.findall(r"[ -]", raw)
    if seps and len(set(seps)) > 1:
        return None
    groups = [len(g) for g in re.split(r"[ -]", raw)]
    if seps and groups not in ([4, 4, 4, 4], [4, 6, 5], [4, 6, 4], [4, 4, 4, 4, 3]):
        return None
    n = len(digits)
    two, three, four = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= two <= 55 or 2221 <= four <= 2720) and n == 16:
        return "mastercard"
    if two in (34, 37) and n == 15:
        return "amex"
    if (four == 6011 or two == 65 or 644 <= three <= 649) and n >= 16:
        return "discover"
    if 3528 <= four <= 3589 and n >= 16:
        return "jcb"
    if (two in (36, 38) or 300 <= three <= 305) and n >= 14:
        return "diners"
    if two == 62 and n >= 16:
        return "unionpay"
    return None


def _iban(m: re.Match[str]) -> str | None:
    compact = m.group(0).replace(" ", "")
    return "iban" if iban_ok(compact) else None


def _ssn(m: re.Match[str]) -> str | None:
    return "us_ssn" if ssn_ok(m.group(1), m.group(2), m.group(3)) else None


def _aadhaar(m: re.Match[str]) -> str | None:
    raw = m.group(0)
    if len(set(re.findall(r"[ -]", raw))) > 1:
        return None
    digits = re.sub(r"[ -]", "", raw)
    return "in_aadhaar" if verhoeff_ok(digits) else None


def _dni(m: re.Match[str]) -> str | None:
    return "es_dni" if dni_ok(m.group(0)) else None


def _ipv4(m: re.Match[str]) -> str | None:
    before = m.string[max(0, m.start() - 9) : m.start()].lower()
    if re.search(r"(?:\bv|version\s?|release\s?)$", before):
        return None
    addr = ipaddress.IPv4Address(m.group(0))
    if addr.is_loopback or addr.is_unspecified:
        return None
    return "ipv4"


def _ipv6(m: re.Match[str]) -> str | None:
    text = m.group(0)
    if sum(c in "0123456789abcdefABCDEF" for c in text) < 4:
        return None
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    if addr.is_loopback or addr.is_unspecified:
        return None
    return "ipv6"


def _phone_digits_ok(m: re.Match[str]) -> str | None:
    digits = re.sub(r"\D", "", m.group(0))
    return "phone" if 8 <= len(digits) <= 15 else None


def _phone_context(m: re.Match[str]) -> str | None:
    digits = re.sub(r"\D", "", m.group(1))
    return "phone" if 7 <= len(digits) <= 15 else None


def _keyword_secret(m: re.Match[str]) -> str | None:
    value = m.group(1)
    if PLACEHOLDER.fullmatch(value):
        return None
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    if len(value) >= 16 and has_digit and has_alpha and _entropy(value) >= 3.0:
        return "keyword_token"
    return None


def _password(m: re.Match[str]) -> str | None:
    value = m.group(1)
    if any(c.isdigit() for c in value) or re.search(r"[^A-Za-z0-9]", value):
        return "password"
    return None


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_RECOGNISERS: tuple[_Recogniser, ...] = (
    # --- secrets: vendor formats first, then words that announce a secret.
    _Recogniser(
        "secret",
        re.compile(
            # The body stops at the first "--", so a truncated key (no END
            # line) is still covered and scanning stays linear.
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:[A-Za-z0-9+/=\s:,.]|-(?!-)){0,16384}"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?"
        ),
        _kind("private_key"),
    ),
    _Recogniser(
        "secret",
        re.compile(
            r"(?<![\w-])(?:"
            r"sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
            r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}"
            r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
            r"|gh[pousr]_[A-Za-z0-9]{36,255}"
            r"|github_pat_[A-Za-z0-9_]{40,255}"
            r"|glpat-[A-Za-z0-9_-]{20,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}"
            r"|AIza[0-9A-Za-z_-]{35}"
            r"|hf_[A-Za-z0-9]{30,}"
            r"|mr-[A-Za-z0-9_-]{40,100}"
            r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
            r")(?![\w-])"
        ),
        _kind("api_key"),
    ),
    _Recogniser(
        "secret",
        re.compile(
            r"(?i)(?:\bbearer\s+|(?<![a-z0-9])(?:[a-z0-9]{1,24}[_-]){0,4}"
            r"(?:api[_-]?key|apikey|secret|access[_-]?key|token|private[_-]?key)"
            r"(?:[_-][a-z0-9]{1,24}){0,4}[\"']?\s*(?:[:=]|=>|\bis\b)\s*[\"']?)"
            r"([A-Za-z0-9_\-+/=.~]{16,512})"
        ),
        _keyword_secret,
        group=1,
    ),
    _Recogniser(
        "secret",
        re.compile(
            r"(?i)(?<![a-z0-9])(?:[a-z0-9]{1,24}[_-]){0,4}(?:passw(?:or)?d|pwd|passphrase)"
            r"[\"']?\s*(?:[:=]|=>)\s*[\"']?"
            r"([^\s\"',;]{8,128})"
        ),
        _password,
        group=1,
    ),
    # --- e-mail
    _Recogniser(
        "email",
        re.compile(
            r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
            r"(?![\w-])"
        ),
        _kind("email"),
    ),
    # --- payment cards: 13-19 digits, plain or in groups, with a Luhn check.
    _Recogniser(
        "credit_card",
        re.compile(r"(?<![\w.,/-])\d(?:[ -]?\d){12,18}(?![\w/-]|[.,]\d)"),
        _card,
    ),
    # --- IBAN: compact or printed in groups of four.
    _Recogniser(
        "iban",
        re.compile(
            r"\b[A-Z]{2}\d{2}"
            r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)\b"
        ),
        _iban,
    ),
    # --- national ids
    _Recogniser(
        "national_id",
        re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])"),
        _ssn,
    ),
    _Recogniser(
        "national_id",
        re.compile(
            r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
            r" ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
        ),
        _kind("uk_nino"),
    ),
    _Recogniser(
        "national_id",
        re.compile(r"\b(?:\d{8}|[XYZ]-?\d{7})-?[A-Z]\b"),
        _dni,
    ),
    _Recogniser(
        "national_id",
        re.compile(
            r"(?<![\w.-])(?<!\d )[2-9]\d{3}([ -]?)\d{4}\1\d{4}(?![\w-]|[.,]\d| \d)"
        ),
        _aadhaar,
    ),
    # --- IP addresses
    _Recogniser(
        "ip_address",
        re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)"),
        _ipv4,
    ),
    _Recogniser(
        "ip_address",
        re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        _ipv6,
    ),
    # --- phone numbers
    _Recogniser(
        "phone",
        re.compile(
            r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w-]|\.\d)"
        ),
        _phone_digits_ok,
    ),
    _Recogniser(
        "phone",
        re.compile(
            r"(?<![\w(+-])(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[.-])[2-9]\d{2}[.-]\d{4}"
            r"(?![\w-]|\.\d)"
        ),
        _kind("nanp"),
    ),
    _Recogniser(
        "phone",
        re.compile(
            r"(?<![\w+-])(?<![A-Z0-9] )0[1-9]\d{1,3} \d{3,4} ?\d{3,4}"
            r"(?![\w-]|[.,]\d| [A-Z0-9])"
        ),
        _phone_digits_ok,
    ),
    _Recogniser(
        "phone",
        re.compile(
            r"(?i)\b(?:phone|tel|telephone|mobile|cell|call me(?: at| on)?|fax|"
            r"whatsapp|sms)\b[:.]?\s{0,3}(?:no\.?|number|#)?[:]?\s{0,3}"
            r"(\(?\d[\d ().-]{5,18}\d)(?![\w-]|[.,]\d)"
        ),
        _phone_context,
        group=1,
    ),
)


def _candidates(text: str, types: frozenset[str]) -> Iterator[PiiFinding]:
    for rec in _RECOGNISERS:
        if rec.type not in types:
            continue
        for m in rec.pattern.finditer(text):
            kind = rec.check(m)
            if kind is None:
                continue
            start, end = m.span(rec.group)
            yield PiiFinding(rec.type, kind, start, end, text[start:end])


class PiiDetector:
    """Finds PII in text; ``types`` limits the search (default: all types)."""

    def __init__(self, types: Iterable[str] = PII_TYPES) -> None:
        unknown = set(types) - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types: {', '.join(sorted(unknown))}")
        self.types = frozenset(types)

    def detect(self, text: str) -> list[PiiFinding]:
        """Non-overlapping findings in order; on overlap the stronger check wins."""
        if not text:
            return []
        found = sorted(
            _candidates(text, self.types),
            key=lambda f: (_PRIORITY[f.type], -(f.end - f.start), f.start),
        )
        # Kept spans never overlap, so only the neighbours by start position
        # can clash with a new one.
        starts: list[int] = []
        kept: list[PiiFinding] = []
        for f in found:
            i = bisect.bisect_left(starts, f.start)
            if i > 0 and kept[i - 1].end > f.start:
                continue
            if i < len(kept) and kept[i].start < f.end:
                continue
            starts.insert(i, f.start)
            kept.insert(i, f)
        return kept

    def types_in(self, text: str) -> set[str]:
        return {f.type for f in self.detect(text)}


class Redactor:
    """Replaces PII with typed placeholders and can put the originals back.

    One instance per request: the same value gets the same placeholder across
    all of that request's messages (``<EMAIL_1>`` twice means one address).
    """

    def __init__(self, detector: PiiDetector) -> None:
        self.detector = detector
        self.originals: dict[str, str] = {}
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: Counter[str] = Counter()
        self.types: set[str] = set()

    def redact(self, text: str) -> str:
        findings = self.detector.detect(text)
        if not findings:
            return text
        out: list[str] = []
        pos = 0
        for f in findings:
            out.append(text[pos : f.start])
            out.append(self._placeholder(f))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    def _placeholder(self, f: PiiFinding) -> str:
        self.types.add(f.type)
        known = self._by_value.get((f.type, f.value))
        if known is not None:
            return known
        prefix = PLACEHOLDER_PREFIX[f.type]
        self._counts[prefix] += 1
        name = f"<{prefix}_{self._counts[prefix]}>"
        self._by_value[(f.type, f.value)] = name
        self.originals[name] = f.value
        return name

    def restore(self, text: str) -> str:
        """Put back every placeholder this redactor made (others stay as is)."""
        if not self.originals:
            return text
        return PLACEHOLDER.sub(
            lambda m: self.originals.get(m.group(0), m.group(0)), text
        )

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self)


class StreamRestorer:
    """Restores placeholders in a streamed answer whose chunks may split them.

    ``feed`` returns the text that is safe to send now; text that might be the
    start of a placeholder is held until the next chunk or ``flush``.
    """

    _LONGEST = len("<NATIONAL_ID_99999>")

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        cut = text.rfind("<")
        if cut != -1 and len(text) - cut < self._LONGEST and ">" not in text[cut:]:
            self._held, text = text[cut:], text[:cut]
        else:
            self._held = ""
        return self.redactor.restore(text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self.redactor.restore(text)
