"""``python -m gankit.cli ...`` (e.g. under ``torchrun``)."""

import sys

from gankit.cli import main

sys.exit(main())
