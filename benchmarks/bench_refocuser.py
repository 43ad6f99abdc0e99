"""Speed of the Refocuser per backend (what ``deepz bench`` prints).

Usage::

    python benchmarks/bench_refocuser.py [--size 256] [--planes 21] [--volumes 20]
                                         [--model default] [--device cpu]

Prints a Markdown table per backend installed: volumes/s, plane inferences/s,
latency p50/p99 per volume, GFLOP per volume (analytic count of the U-Net's
convolutions) and achieved GFLOP/s. Quote figures with the machine they came from.
"""

from __future__ import annotations

import sys

from deepz._cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
