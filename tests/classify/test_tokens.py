"""Token counting (``mixroute.tokens``): the shipped tokenizer, from many threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from mixroute import tokens


def test_counts_are_the_tokenizers_own() -> None:
    tok = tokens._tokenizer()
    assert tok is not None
    text = "Write a Python function that checks whether a number is prime. " * 50
    want = len(tok.encode(text, add_special_tokens=False).ids)
    assert tokens.count_tokens(text) == want
    assert tokens.count_tokens("") == 0
    assert tokens.count_message_tokens([{"role": "user", "content": "hello"}]) == (
        tokens.MESSAGE_OVERHEAD + tokens.count_tokens("hello")
    )


def test_threads_count_side_by_side_and_agree() -> None:
    texts = [
        f"prompt {i}: " + "lorem ipsum dolor sit amet " * (200 + i) for i in range(8)
    ]
    alone = [tokens.count_tokens(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(tokens.count_tokens, texts)) == alone
