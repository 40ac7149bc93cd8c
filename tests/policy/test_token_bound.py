"""The prompt's token count: a cheap upper bound first, exact when it matters."""

from __future__ import annotations

from mixroute.policy import PolicyRequest
from mixroute.tokens import count_message_tokens

BODIES = [
    [{"role": "user", "content": "Write a Python function that checks primes."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "日本語で"},
    ],
    [{"role": "user", "content": "naïve café déjà vu " * 50}],
    [{"role": "user", "content": [{"type": "text", "text": "x = [i**2 for i in r]"}]}],
]


def test_the_bound_never_undercounts_and_exact_counts() -> None:
    for messages in BODIES:
        r = PolicyRequest.from_body({"model": "auto", "messages": messages})
        exact = count_message_tokens(messages)
        assert not r.prompt_tokens_exact and r.prompt_tokens >= exact
        counted = r.exact()
        assert counted.prompt_tokens_exact and counted.prompt_tokens == exact
        assert counted.exact() is counted
