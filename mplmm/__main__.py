"""``python -m mplmm`` → :func:`mplmm.cli.main`."""
import sys

from .cli import main

sys.exit(main())
