"""``python -m bench``: the whole suite, as ``make bench`` runs it.

With no arguments this is ``python -m bench.report --run``: every benchmark in
a fixed order, each in its own process under a time cap, then the summary and
BENCHMARKS.md. ``python -m bench NAME ...`` runs the named benchmark modules'
``main()`` in this process instead (e.g. ``python -m bench classify cache``).
"""

from __future__ import annotations

import importlib
import sys
import traceback


def main() -> int:
    names = sys.argv[1:]
    if not names:
        from bench import report

        report.main(["--run"])
        return 0
    failed = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if not callable(entry):
            print(f"bench.{name} has no main()", file=sys.stderr)
            failed += 1
            continue
        print(f"== bench.{name}", flush=True)
        sys.argv = [f"bench.{name}"]
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
