"""mixroute: a Mixture-of-Models router for LLM traffic."""

__version__ = "0.1.0"
