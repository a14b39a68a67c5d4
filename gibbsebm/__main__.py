"""``python -m gibbsebm``: the same as the ``gibbsebm`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
