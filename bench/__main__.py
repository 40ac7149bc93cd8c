"""Run every ``bench/*.py`` module that defines ``main()``, one after another.

``python -m bench`` runs them all; ``python -m bench NAME ...`` runs the named
ones only. A failing benchmark is reported and the others still run.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    wanted = set(sys.argv[1:])
    failed = 0
    for path in sorted(here.glob("*.py")):
        name = path.stem
        if name.startswith("_") or (wanted and name not in wanted):
            continue
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if not callable(entry):
            continue
        print(f"== bench.{name}", flush=True)
        try:
            entry()
        except SystemExit as exc:
            failed += bool(exc.code)
        except Exception:
            traceback.print_exc()
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
