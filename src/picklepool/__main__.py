"""``python -m picklepool``: the ``picklepool`` command (see ``picklepool.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
