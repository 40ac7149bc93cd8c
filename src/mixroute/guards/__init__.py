"""Guards on the request path: client keys, rate limits, request limits, PII,
jailbreak / prompt-injection detection, and log redaction."""
