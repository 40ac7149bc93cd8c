"""State shared between requests and replicas.

- ``base``: the ``StateStore`` protocol (key/value with TTL, window counters,
  atomic budget reservations, circuit state, hash aggregates) and its values.
- ``memory``: the in-process store (embedded default).
- ``redis``: the Redis store (redis-py asyncio, Lua scripts for atomicity).
- ``failover``: Redis first, local memory while Redis is unreachable.
- ``factory``: the store named by the config's ``state:`` section.
- ``circuits``: a circuit breaker whose open state every replica sees.
- ``ledger``: the SQLite usage ledger; ``keys``: client API keys.
"""
