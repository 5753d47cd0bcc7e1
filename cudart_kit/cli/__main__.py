"""``python -m cudart_kit.cli ARGS`` is ``cudart-kit ARGS``."""

import sys

from .app import main

sys.exit(main())
