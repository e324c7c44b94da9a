"""Experiments that put the source documents' claims to the test.

`REGISTRY` maps a name to a function `(quick: bool) -> ClaimResult`; `experiments.claims.report`
runs one, writes `report.md`, `table.csv` and PNG plots under the runs root, and returns a summary.
"""

from __future__ import annotations

from experiments.claims.alignment import alignment
from experiments.claims.bitdelta import bitdelta
from experiments.claims.dedup_family import dedup_family
from experiments.claims.evolution import mutation_sweep, specialisation, starvation, threshold_sweep

REGISTRY = {
    "specialisation": specialisation,
    "starvation": starvation,
    "mutation-sweep": mutation_sweep,
    "threshold-sweep": threshold_sweep,
    "bitdelta": bitdelta,
    "dedup-family": dedup_family,
    "alignment": alignment,
}

__all__ = ["REGISTRY"]
