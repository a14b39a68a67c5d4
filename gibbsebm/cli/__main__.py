"""``python -m gibbsebm.cli``: the same as the ``gibbsebm`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
