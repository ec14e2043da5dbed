"""`python -m optimizer.cli` runs the `autosim` command line."""

import sys

from optimizer.cli import main

sys.exit(main())
