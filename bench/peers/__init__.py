"""Peer tools measured beside mixroute, each installed in its own virtual env.

``.bench-venv/<name>`` (git-ignored) is created on first use with the pinned
version and reused afterwards; the install time is kept in the venv's
``.installed.json`` and reported, but it is not part of a benchmark's run.
"""
