"""``python -m resdsl``: the ``resdsl`` command."""

import sys

from .cli import main

sys.exit(main())
