"""Entry point: `python -m importcore import|sync|serve`."""

import sys

from .cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
