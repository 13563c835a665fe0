"""``python -m torchslim.cli``: the same program as the ``torchslim`` command."""

import sys

from torchslim.cli import main

sys.exit(main())
