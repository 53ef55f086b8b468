"""`python -m bench [--quick] [name ...]`: run benchmarks, print tables, write bench/results/."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
import traceback

from bench.harness import format_table, machine, stop_servers, write

# Each name is a module bench/<name>.py with run(quick: bool) -> dict.
ALL = ["fractal", "gradient", "compile", "minimize", "fit", "pyhf", "load"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for smoke tests")
    parser.add_argument("names", nargs="*", help=f"subset of {ALL}")
    args = parser.parse_args(argv)
    names = args.names or ALL
    # A terminated run still stops its servers (the finally below), like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"machine: {machine()}")
    failed = []
    try:
        for name in names:
            try:
                module = importlib.import_module(f"bench.{name}")
            except ModuleNotFoundError as exc:
                if exc.name == f"bench.{name}":
                    print(f"(no benchmark {name} yet)")
                    continue
                raise
            started = time.perf_counter()
            try:
                result = module.run(quick=args.quick)
            except Exception:  # one broken benchmark must not hide the others' numbers
                traceback.print_exc()
                failed.append(name)
                continue
            print(format_table(result))
            print(f"-> {write(name, result, args.quick)} ({time.perf_counter() - started:.1f} s)\n",
                  flush=True)
    finally:
        stop_servers()
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
