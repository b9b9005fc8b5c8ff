"""``python -m cellnas ...``: the ``cellnas`` command, for a checkout on ``PYTHONPATH`` without an install."""

import sys

from cellnas.cli import main

if __name__ == "__main__":
    sys.exit(main())
