"""The gene pool: genes, four-level dedup, lifecycle, attestation and a persistent store.

Public names (loaded on first use; `import genome.pool` stays light):
`GenePool`, `Gene`, `GeneStatus`, `IllegalTransition`, `evolve`, `DedupOptions`, `IngestReport`,
`PoolCorrupt`, `verify`, `compact`, `stats`, `Attestation`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC: dict[str, str] = {
    "GenePool": "genome.pool.pool",
    "Gene": "genome.pool.gene", "GeneStatus": "genome.pool.gene", "IllegalTransition": "genome.pool.gene",
    "evolve": "genome.pool.gene",
    "DedupOptions": "genome.pool.options", "IngestReport": "genome.pool.options",
    "PoolCorrupt": "genome.pool.store",
    "verify": "genome.pool.maintenance", "compact": "genome.pool.maintenance", "stats": "genome.pool.maintenance",
    "Attestation": "genome.pool.attest",
}

__all__ = ["Attestation", "DedupOptions", "Gene", "GenePool", "GeneStatus", "IllegalTransition", "IngestReport",
           "PoolCorrupt", "compact", "evolve", "stats", "verify"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'genome.pool' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
