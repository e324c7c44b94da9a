"""Model file formats: lazy readers and streaming, atomic writers.

Readers (GGUF, safetensors, PyTorch, Hugging Face folders, organ folders) share one interface,
`ModelReader`: list tensors, read one tensor's stored bytes or values. Writers take
``(TensorInfo, read_raw)`` pairs so that a model is never held in memory at once.
"""

from __future__ import annotations

from genome.formats.base import MetaEntry, ModelReader, TensorInfo, decode_plain
from genome.formats.detect import items_of, open_model, output_kind, plain_items, sniff, write_model
from genome.formats.gguf_io import dequantize, write_gguf
from genome.formats.names import canonical_names, gguf_arch
from genome.formats.organ_dir import content_hash, read_manifest, write_organ_dir
from genome.formats.safetensors_io import write_safetensors

__all__ = [
    "MetaEntry", "ModelReader", "TensorInfo", "canonical_names", "content_hash", "decode_plain",
    "dequantize", "gguf_arch", "items_of", "open_model", "output_kind", "plain_items",
    "read_manifest", "sniff", "write_gguf", "write_model", "write_organ_dir", "write_safetensors",
]
