"""``python -m isthmus``: the same as the ``isthmus`` console script."""

import sys

from isthmus.cli import main

sys.exit(main())
