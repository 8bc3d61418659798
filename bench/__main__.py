"""``python -m bench [SCENARIO ...] [--scale F]``: run, print, write bench/RESULTS.md."""

from __future__ import annotations

import argparse
import shlex
import sys

from bench.harness import bench_env
from bench.report import RESULTS, Row, print_table, write_markdown
from bench.scenarios import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], help="default: all, in order")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="size knob: 0.1 runs everything at a tenth (about a minute)"
    )
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    chosen = args.scenarios or list(SCENARIOS)
    rows: list[Row] = []
    with bench_env() as env:
        for name in chosen:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows += SCENARIOS[name](env, args.scale)
    print_table(rows)
    if not args.no_write:
        arguments = shlex.join(argv if argv is not None else sys.argv[1:])
        write_markdown(rows, f"python -m bench {arguments}".strip())
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
