"""Create (once) and locate the pinned virtual env of a peer tool."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
VENVS = ROOT / ".bench-venv"
PYTHON = "python3.11"


def ensure(name: str, requirements: list[str]) -> Path:
    """The ``bin/python`` of ``.bench-venv/NAME`` with ``requirements`` installed.

    The first call creates the env and pip-installs the pinned requirements
    (from PyPI through pip's own configuration); later calls only check the
    stamp, which records the requirements and how long the install took.
    """
    env = VENVS / name
    python = env / "bin" / "python"
    stamp = env / ".installed.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("requirements") == (
        requirements
    ):
        return python
    print(f"installing {' '.join(requirements)} into {env} (one-time)", flush=True)
    start = time.monotonic()
    if not python.exists():
        subprocess.run([PYTHON, "-m", "venv", str(env)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        check=True,
        stdout=sys.stdout,
        stderr=sys.stderr,
    )
    seconds = round(time.monotonic() - start, 1)
    stamp.write_text(
        json.dumps({"requirements": requirements, "install_seconds": seconds})
    )
    return python


def install_seconds(name: str) -> float | None:
    """How long the one-time install of ``name`` took, if it was recorded."""
    stamp = VENVS / name / ".installed.json"
    if not stamp.exists():
        return None
    value = json.loads(stamp.read_text()).get("install_seconds")
    return float(value) if value is not None else None


def version(python: Path, package: str) -> str:
    """The installed version of ``package`` in the env of ``python``."""
    out = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.metadata as m; print(m.version({package!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()
