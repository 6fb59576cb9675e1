"""``python -m lineage_audit`` runs the ``lineage-audit`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
