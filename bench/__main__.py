"""Command line: ``python -m bench [--quick]``."""

from __future__ import annotations

import argparse
import json

from bench.report import summary_lines
from bench.run import run
from bench.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Switchboard on this machine and write bench/results/.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run each measurement briefly (about 80 seconds in all); rough figures",
    )
    arguments = parser.parse_args()
    settings = Settings.quick_run() if arguments.quick else Settings()

    path = run(settings)
    for line in summary_lines(json.loads(path.read_text())):
        print(line)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
