"""``python -m benchmarks``: run every benchmark module and print one table (or ``--json``).

Each module under benchmarks/ exposes ``run() -> dict[str, float]``; keys are stable so
figures can be compared across versions. Select modules with ``--only state,notify``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODULES = ["state_bench", "executor_bench", "notify_bench", "micro_bench", "range_bench",
           "order_flow_bench", "reliability_bench", "restart_bench", "backtest_bench"]


def interpreter_build() -> str:
    """Which build of Python ran the figures, not only its version: builds of one version differ
    by some 10 % in speed (README, Measured performance: a build without profile-guided and
    link-time optimisation, as pyenv compiles by default, against Debian's optimised one), so
    figures compare only between runs of the same build. ``sys.version``'s build date and
    compiler tell builds apart (the executable's path is left out: it may name the user)."""
    return f"{platform.python_implementation()} {' '.join(sys.version.split())}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--only", default="", help="comma-separated module names (without _bench)")
    args = parser.parse_args(argv)
    wanted = [m for m in MODULES if not args.only or m.removesuffix("_bench") in args.only.split(",")]
    figures: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in wanted:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                continue  # not written yet
            raise
        try:
            figures.update(module.run())
        except Exception as exc:  # one broken benchmark must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
    machine = {"python": platform.python_version(), "machine": platform.machine(),
               "system": platform.system(), "cpus": __import__("os").cpu_count(),
               "python_build": interpreter_build()}
    if args.json:
        print(json.dumps({"figures": figures, "errors": errors, "machine": machine}, indent=2, sort_keys=True))
    else:
        print(f"benchmarks on {machine['system']} {machine['machine']}, {machine['cpus']} CPUs, "
              f"Python {machine['python']} ({machine['python_build']})")
        for key, value in figures.items():
            print(f"  {key:32} {value}")
        for name, error in errors.items():
            print(f"  {name}: FAILED {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
