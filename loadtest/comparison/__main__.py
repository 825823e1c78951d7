"""`python3 -m comparison` (from loadtest/): the same as `python3 loadtest/compare.py`."""

import sys

from .main import main

sys.exit(main(sys.argv[1:]))
