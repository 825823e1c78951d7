#!/usr/bin/env python3
"""Side-by-side live fan-out benchmark: corecast against nginx with the RTMP module.

This is the entry; the program is the package `comparison/` beside this file (see its
docstring, in loadtest/comparison/__init__.py, for what it measures and how to run it):

    python3 loadtest/compare.py --help
"""

import sys

from comparison.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
