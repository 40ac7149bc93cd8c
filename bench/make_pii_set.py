"""Write the labelled PII set in tests/guards/data/pii-labelled.jsonl.

Every positive is synthetic and built from the public format of its type, with
check digits computed here (independently of mixroute's validators); hard
negatives are look-alikes that must not be flagged: order numbers, dates,
versions, ISBNs, cards and IBANs with a wrong check digit, never-issued SSNs,
UUIDs, hashes. Deterministic (seeded), so the file is reproducible:

    .venv/bin/python bench/make_pii_set.py
"""

# Templates read best one per line, so long lines are allowed here.
# ruff: noqa: E501

from __future__ import annotations

import json
import random
import string
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests/guards/data/pii-labelled.jsonl"
rng = random.Random(20261204)

FIRST = ["anna", "li.wei", "j.smith", "maria-jose", "o_connor", "dev+ops", "k.tanaka"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "uni.example.edu"]


def email() -> str:
    return f"{rng.choice(FIRST)}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def card(valid: bool = True) -> str:
    prefix, length = rng.choice(
        [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
         ("6011", 16), ("35", 16)]
    )  # fmt: skip
    if prefix == "35":
        prefix = str(rng.randint(3528, 3589))
    body = prefix + "".join(
        rng.choice(string.digits) for _ in range(length - 1 - len(prefix))
    )
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    digits = body + check
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return digits
    sep = " " if style == "space" else "-"
    if length == 15:
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


IBAN_FORMATS = {"DE": "8n10n", "GB": "4a6n8n", "FR": "5n5n11c2n", "ES": "4n4n2n10n",
                "NL": "4a10n", "IT": "1a5n5n12c", "CH": "5n12c", "BE": "3n7n2n"}  # fmt: skip


def _bban(spec: str) -> str:
    out = []
    num = ""
    for ch in spec:
        if ch.isdigit():
            num += ch
            continue
        pool = {"n": string.digits, "a": string.ascii_uppercase,
                "c": string.ascii_uppercase + string.digits}[ch]  # fmt: skip
        out.append("".join(rng.choice(pool) for _ in range(int(num))))
        num = ""
    return "".join(out)


def iban(valid: bool = True) -> str:
    country = rng.choice(list(IBAN_FORMATS))
    bban = _bban(IBAN_FORMATS[country])
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = (check + rng.randint(1, 50)) % 97 + 2
    code = f"{country}{check:02d}{bban}"
    if rng.random() < 0.6:
        return " ".join(code[i : i + 4] for i in range(0, len(code), 4))
    return code


def ssn(valid: bool = True) -> str:
    if valid:
        area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
        return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    return rng.choice(
        [f"000-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
         f"666-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
         f"9{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
         f"{rng.randint(100, 665)}-00-{rng.randint(1000, 9999)}"]
    )  # fmt: skip


def nino() -> str:
    first = rng.choice("ABCEHJKLMPRSTWXY")
    second = rng.choice("ABCEHJLMPRSTWXY")
    digits = [f"{rng.randint(0, 99):02d}" for _ in range(3)]
    letter = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{first}{second} {' '.join(digits)} {letter}"
    return f"{first}{second}{''.join(digits)}{letter}"


def dni(valid: bool = True) -> str:
    n = rng.randint(10_000_000, 99_999_999)
    letter = "TRWAGMYFPDXBNJZSQVHLCKE"[n % 23]
    if not valid:
        letter = "TRWAGMYFPDXBNJZSQVHLCKE"[(n + rng.randint(1, 22)) % 23]
    return f"{n}{letter}" if rng.random() < 0.7 else f"{n}-{letter}"


def _verhoeff_tables() -> tuple[list[list[int]], list[list[int]], list[int]]:
    # The dihedral group D5: elements 0-4 rotations, 5-9 reflections.
    def mul(a: int, b: int) -> int:
        if a < 5 and b < 5:
            return (a + b) % 5
        if a < 5:
            return 5 + (a + b - 5) % 5
        if b < 5:
            return 5 + (a - 5 - b) % 5
        return (a - b) % 5

    d = [[mul(a, b) for b in range(10)] for a in range(10)]
    perm = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4]
    p = [list(range(10))]
    for _ in range(7):
        p.append([perm[x] for x in p[-1]])
    inv = [next(b for b in range(10) if d[a][b] == 0) for a in range(10)]
    return d, p, inv


def aadhaar(valid: bool = True) -> str:
    d, p, inv = _verhoeff_tables()
    body = str(rng.randint(2, 9)) + "".join(
        rng.choice(string.digits) for _ in range(10)
    )
    c = 0
    for i, ch in enumerate(reversed(body)):
        c = d[c][p[(i + 1) % 8][int(ch)]]
    check = inv[c]
    if not valid:
        check = (check + rng.randint(1, 9)) % 10
    n = body + str(check)
    return f"{n[:4]} {n[4:8]} {n[8:]}" if rng.random() < 0.7 else n


def phone() -> str:
    return rng.choice(
        [f"+1 {rng.randint(201, 989)} {rng.randint(201, 999)} {rng.randint(0, 9999):04d}",
         f"+1-{rng.randint(201, 989)}-{rng.randint(201, 999)}-{rng.randint(0, 9999):04d}",
         f"({rng.randint(201, 989)}) {rng.randint(201, 999)}-{rng.randint(0, 9999):04d}",
         f"{rng.randint(201, 989)}-{rng.randint(201, 999)}-{rng.randint(0, 9999):04d}",
         f"+44 20 {rng.randint(7000, 8999)} {rng.randint(0, 9999):04d}",
         f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
         f"020 {rng.randint(7000, 8999)} {rng.randint(0, 9999):04d}",
         f"+49 30 {rng.randint(1000000, 99999999)}",
         f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} "
         f"{rng.randint(10, 99)}",
         f"+91 {rng.randint(70000, 99999)} {rng.randint(10000, 99999)}",
         f"+81 3-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"]
    )  # fmt: skip


def ipv4() -> str:
    return rng.choice(
        [f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
         f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
         f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
         f"{rng.randint(1, 254)}"]
    )  # fmt: skip


def ipv6() -> str:
    groups = [f"{rng.randint(0, 65535):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return "2001:db8::" + ":".join(groups[:3])
    return ":".join(groups)


def token(chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


ALNUM = string.ascii_letters + string.digits


def secret() -> str:
    return rng.choice(
        [lambda: "sk-proj-" + token(ALNUM + "_-", 48),
         lambda: "sk-" + token(ALNUM, 48),
         lambda: "AKIA" + token(string.ascii_uppercase + string.digits, 16),
         lambda: "ghp_" + token(ALNUM, 36),
         lambda: "xoxb-" + token(string.digits, 11) + "-" + token(ALNUM, 24),
         lambda: "AIza" + token(ALNUM + "_-", 35),
         lambda: "sk_live_" + token(ALNUM, 24)]
    )()  # fmt: skip


POSITIVE_TEMPLATES: list[tuple[str, list[str]]] = [
    ("Please email {email} about the invoice.", ["email"]),
    ("Contact: {email}", ["email"]),
    ("My card number is {credit_card}, expiry 04/27.", ["credit_card"]),
    ("Charge {credit_card} for the renewal.", ["credit_card"]),
    ("Wire the money to IBAN {iban} by Friday.", ["iban"]),
    ("Account: {iban}", ["iban"]),
    ("My SSN is {us_ssn} and I need a W-2.", ["national_id:us_ssn"]),
    ("NI number {uk_nino} for the payroll form.", ["national_id:uk_nino"]),
    ("DNI {es_dni}, nacido en Sevilla.", ["national_id:es_dni"]),
    ("Aadhaar: {in_aadhaar}", ["national_id:in_aadhaar"]),
    ("Call me on {phone} after 6pm.", ["phone"]),
    ("You can reach the office at {phone}.", ["phone"]),
    ("The server at {ipv4} keeps timing out.", ["ip_address:ipv4"]),
    ("Block traffic from {ipv6} in the firewall.", ["ip_address:ipv6"]),
    ("Why does OPENAI_API_KEY={secret} fail?", ["secret"]),
    ("Here is my token {secret}, can you check the scopes?", ["secret"]),
    ("Send the report to {email} and text {phone} when done.", ["email", "phone"]),
    ("Refund {credit_card} and notify {email}.", ["credit_card", "email"]),
    ("Employee {uk_nino}, salary to {iban}.", ["national_id:uk_nino", "iban"]),
    ("Login from {ipv4} used key {secret}.", ["ip_address:ipv4", "secret"]),
]

MAKERS = {
    "email": email, "credit_card": card, "iban": iban, "us_ssn": ssn, "uk_nino": nino,
    "es_dni": dni, "in_aadhaar": aadhaar, "phone": phone, "ipv4": ipv4, "ipv6": ipv6,
    "secret": secret,
}  # fmt: skip

NEGATIVES = [
    lambda: f"Order ORD-{rng.randint(10**7, 10**8)} shipped on 2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}.",
    lambda: f"Upgrade from version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)} to the latest release.",
    lambda: f"Build v{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(10, 999)} fixes the crash.",
    lambda: f"The ISBN is 978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}.",
    lambda: f"This card {card(valid=False)} was declined as invalid.",
    lambda: f"Test with the bogus IBAN {iban(valid=False)} to see the error path.",
    lambda: f"Invalid SSN example {ssn(valid=False)} should be rejected.",
    lambda: f"DNI con letra errónea {dni(valid=False)}.",
    lambda: f"Tracking number {rng.randint(10**11, 10**12)}{rng.randint(10, 99)}",
    lambda: f"The meeting is at {rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)} on 12/03/2025.",
    lambda: f"Total: ${rng.randint(1, 999)},{rng.randint(100, 999)}.{rng.randint(10, 99)} across {rng.randint(2, 40)} invoices.",
    lambda: f"Commit {token('0123456789abcdef', 40)} broke the build.",
    lambda: f"Request id {token('0123456789abcdef', 8)}-{token('0123456789abcdef', 4)}-4{token('0123456789abcdef', 3)}-a{token('0123456789abcdef', 3)}-{token('0123456789abcdef', 12)}",
    lambda: f"Use std::vector<int> and std::map in C++{rng.choice(['11', '17', '20'])}.",
    lambda: f"Compute {rng.randint(1000, 9999)} * {rng.randint(1000, 9999)} + {rng.randint(10**6, 10**7)}.",
    lambda: f"Population grew from {rng.randint(1, 9)},{rng.randint(100, 999)},{rng.randint(100, 999)} to {rng.randint(1, 9)},{rng.randint(100, 999)},{rng.randint(100, 999)}.",
    lambda: f"Bind the server to 0.0.0.0 and test on 127.0.0.1:{rng.randint(1024, 65535)}.",
    lambda: f"Set the token_expiry_seconds = {rng.randint(60, 86400)} in the config.",
    lambda: "The password field must not be empty; see the api_key docs.",
    lambda: f"Coordinates {rng.randint(10, 80)}.{rng.randint(100000, 999999)}, -{rng.randint(10, 170)}.{rng.randint(100000, 999999)}",
    lambda: f"Colour #{token('0123456789abcdef', 6)} on a {rng.randint(1920, 3840)}x{rng.randint(1080, 2160)} screen.",
    lambda: f"Part number {rng.choice(['AB', 'XK', 'DE'])}-{rng.randint(1000, 9999)}-{rng.randint(100, 999)}",
    lambda: f"Use @{rng.choice(['dataclass', 'pytest.fixture', 'lru_cache'])} on the function.",
    lambda: f"Fibonacci: 1 1 2 3 5 8 13 21 34 55 89 {rng.randint(100, 999)}",
    lambda: f"Serial {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} is not a card.",
    lambda: f"What is {rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)} if the dashes mean minus?",
]  # fmt: skip


def main() -> None:
    rows = []
    for i in range(400):
        template, labels = POSITIVE_TEMPLATES[i % len(POSITIVE_TEMPLATES)]
        entities = []
        text = template
        for label in labels:
            kind = label.split(":")[-1]
            kind = "secret" if kind == "secret" else kind
            value = MAKERS[kind]()
            text = text.replace("{" + kind + "}", value, 1)
            entities.append({"type": label.split(":")[0], "value": value})
        rows.append({"text": text, "entities": entities, "split": "positive"})
    for i in range(400):
        rows.append({"text": NEGATIVES[i % len(NEGATIVES)](), "entities": [],
                     "split": "hard_negative"})  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
