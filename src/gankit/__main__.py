"""``python -m gankit ...``: the ``gankit`` command without its console script."""

import sys

from gankit.cli import main

sys.exit(main())
