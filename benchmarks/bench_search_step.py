"""Seconds per DARTS search step (optionally against the textbook baseline); prints JSON.

    python benchmarks/bench_search_step.py [--order 1] [--baseline] [--threads N] [--repeats R] [--warmup W] ...

The same as `cellnas bench search-step --json` (every option is passed through).
"""

from __future__ import annotations

import sys

from cellnas.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "search-step", "--json", *sys.argv[1:]]))
