"""``python -m clinfonce`` (and ``torchrun -m clinfonce``): the ``clinfonce`` command."""

import sys

from clinfonce.cli import main

if __name__ == "__main__":
    sys.exit(main())
