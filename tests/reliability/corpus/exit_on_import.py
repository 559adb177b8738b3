"""A module that exits while it is imported (a script imported by mistake)."""

import sys

sys.exit(0)
