"""python -m mae.checks [step ...]: check your exercises, step by step (see runner.py)."""

import sys

from .runner import main

sys.exit(main())
