"""lineage-audit: detect recursive contamination in production AI.

Sub-packages, one per concern: ``ledger`` (the signed, hash-chained, Merkle-attested audit
ledger and its offline verifier); the detection tiers live beside it.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
