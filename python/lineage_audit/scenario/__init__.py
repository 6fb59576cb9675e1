"""The ATLAS-FX reference scenario, generated from a seed and replayed through all five tiers.

``atlas_fx`` (the construction: sources, vendor, schedule, sizes, and the truth the tiers are
checked against), ``embeddings`` (the feed's generated embeddings), ``lineage_events`` (the
OpenLineage events), ``aibom`` (the sources' CycloneDX ML-BOMs), ``human_text`` and
``texts`` (human-written text and the deployer model's own outputs for Tier 4), ``replay``
(runs it through the server and every tier; ``lineage-audit demo``).
"""
