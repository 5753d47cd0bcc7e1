"""``python -m cudart_kit`` is the ``cudart-kit`` command."""

import sys

from .cli import main

sys.exit(main())
