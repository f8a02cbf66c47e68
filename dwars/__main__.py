"""``python -m dwars`` runs the command line."""

import sys

from dwars.cli import main

sys.exit(main())
