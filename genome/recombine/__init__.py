"""Recombination: merge methods, mergekit-style configs, homology, gene transfer, LoRA-fication
and the breeding orchestrator.

Public names load on first use, so `import genome.recombine` stays light (torch is imported by
the modules that need it).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC: dict[str, str] = {
    "REGISTRY": "genome.recombine.registry", "Method": "genome.recombine.registry",
    "Param": "genome.recombine.registry", "get_method": "genome.recombine.registry",
    "MergeConfig": "genome.recombine.config", "MergeTask": "genome.recombine.task",
    "merge_tensors": "genome.recombine.merge", "run_task": "genome.recombine.merge",
    "merge": "genome.recombine.runner", "MergeReport": "genome.recombine.runner",
    "linear_cka": "genome.recombine.homology", "reading_vector": "genome.recombine.homology",
    "homology_matrix": "genome.recombine.homology",
    "interchange_intervention_accuracy": "genome.recombine.homology",
    "transfer": "genome.recombine.transfer", "TransferReport": "genome.recombine.transfer",
    "lorafy": "genome.recombine.lora", "lorafy_models": "genome.recombine.lora",
    "load_adapter": "genome.recombine.lora", "AdapterRouter": "genome.recombine.lora",
    "analyse": "genome.recombine.orchestrator", "make_plan": "genome.recombine.orchestrator",
    "run_plan": "genome.recombine.orchestrator",
}

__all__ = [  # noqa: RUF022 (grouped as in _PUBLIC)
    "REGISTRY",
    "Method",
    "Param",
    "get_method",
    "MergeConfig",
    "MergeTask",
    "merge_tensors",
    "run_task",
    "merge",
    "MergeReport",
    "linear_cka",
    "reading_vector",
    "homology_matrix",
    "interchange_intervention_accuracy",
    "transfer",
    "TransferReport",
    "lorafy",
    "lorafy_models",
    "load_adapter",
    "AdapterRouter",
    "analyse",
    "make_plan",
    "run_plan",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'genome.recombine' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
