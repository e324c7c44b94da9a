"""Genome: real networks taken apart into genes, deduplicated and recombined.

No ray, no mesa: importing `genome` stays fast. The public names below are loaded on first use
(numpy, gguf and torch are imported only by the submodules that need them).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from genome.errors import BadInput

#: public name -> module that defines it.
_PUBLIC: dict[str, str] = {
    # formats
    "ModelReader": "genome.formats", "TensorInfo": "genome.formats", "open_model": "genome.formats",
    "write_gguf": "genome.formats", "write_safetensors": "genome.formats", "write_model": "genome.formats",
    # anatomy
    "Taxon": "genome.taxonomy", "classify": "genome.taxonomy", "classify_model": "genome.taxonomy",
    "Measure": "genome.measure", "measure_tensor": "genome.measure", "measure_values": "genome.measure",
    "extract": "genome.organs", "graft": "genome.organs", "assemble": "genome.organs", "anatomy": "genome.organs",
    # transforms (torch)
    "PurifyReport": "genome.purify", "purify_tensor": "genome.purify",
    "Ternary": "genome.quantize", "BitDelta": "genome.quantize", "ternary_encode": "genome.quantize",
    "ternary_decode": "genome.quantize", "bitdelta_encode": "genome.quantize", "bitdelta_decode": "genome.quantize",
    "Projection": "genome.align", "align": "genome.align", "fit_pca": "genome.align",
    "fit_projection": "genome.align",
    "purify_model": "genome.transforms", "quantize_model": "genome.transforms", "load_quantized": "genome.transforms",
}

__all__ = [
    "BadInput", "BitDelta", "Measure", "ModelReader", "Projection", "PurifyReport", "Taxon", "TensorInfo",
    "Ternary", "align", "anatomy", "assemble", "bitdelta_decode", "bitdelta_encode", "classify",
    "classify_model", "extract", "fit_pca", "fit_projection", "graft", "load_quantized", "measure_tensor",
    "measure_values", "open_model", "purify_model", "purify_tensor", "quantize_model", "ternary_decode",
    "ternary_encode", "write_gguf", "write_model", "write_safetensors",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'genome' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
