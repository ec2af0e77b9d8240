"""Entry point: ``python -m bench`` runs :func:`bench.run.main`."""

import sys

from bench.run import main

sys.exit(main())
