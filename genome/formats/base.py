"""The one small interface every model reader offers, and the dtype table they share.

A reader lists tensors (`TensorInfo`: name, shape, dtype, stored bytes) and reads one tensor at a
time, either as its exact stored bytes (`raw`, zero-copy where the format allows) or as decoded
numbers (`array`, quantised types dequantised to float32). Nothing loads a whole model.

Shapes are always row-major in PyTorch order (GGUF's reversed `ne` order is undone by the GGUF
reader). Dtypes are short upper-case names shared by safetensors and GGUF: ``F32``, ``F16``,
``BF16``, ``I64``, ``Q8_0``, ``Q4_K``, ``TQ2_0`` ...
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from genome.errors import BadInput

#: Plain (unquantised) dtypes: name -> (numpy dtype used for storage, bytes per element).
#: BF16 is stored as uint16 and decoded by hand; F8 types are stored as uint8 and decoded by torch.
PLAIN_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("<f8", 8), "F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2),
    "I64": ("<i8", 8), "I32": ("<i4", 4), "I16": ("<i2", 2), "I8": ("i1", 1),
    "U64": ("<u8", 8), "U32": ("<u4", 4), "U16": ("<u2", 2), "U8": ("u1", 1), "BOOL": ("?", 1),
    "F8_E4M3": ("u1", 1), "F8_E5M2": ("u1", 1),
}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})


class MetaEntry(NamedTuple):
    """One metadata value with its GGUF value type (``STRING``, ``UINT32``, ``ARRAY`` ...)."""

    value: Any
    type: str
    sub_type: str | None = None


@dataclass(frozen=True)
class TensorInfo:
    """What is known about one tensor without reading its data.

    Attributes:
        name: the tensor's name in the original model (restored from GGUF metadata when a
            Cogitans-written GGUF stored the original names).
        shape: logical shape, row-major, PyTorch order.
        dtype: storage type name (see module docstring).
        nbytes: stored size in bytes.
        canonical: GGUF-convention name (``blk.0.ffn_up.weight``), or `name` if unmapped.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    canonical: str = ""

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)  # exact Python ints; np.prod costs ~50x more on a short tuple

    @property
    def quantized(self) -> bool:
        """True for block-quantised GGUF types (Q8_0, Q4_K, TQ2_0 ...)."""
        return self.dtype not in PLAIN_DTYPES

    @property
    def is_float(self) -> bool:
        """True when the values are real numbers (float or quantised float)."""
        return self.dtype in FLOAT_DTYPES or self.quantized


def decode_plain(raw: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Decode stored bytes of a plain dtype into numbers.

    Args:
        raw: uint8 bytes, (nbytes,).
        dtype: a key of `PLAIN_DTYPES`.
        shape: logical shape.

    Returns:
        Array of `shape`; float32 for BF16 and F8, the native dtype otherwise (a view when possible).
    """
    np_dtype, _ = PLAIN_DTYPES[dtype]
    values = raw.view(np.dtype(np_dtype))
    if dtype == "BF16":
        values = (values.astype(np.uint32) << 16).view(np.float32)
    elif dtype.startswith("F8"):
        import torch  # only F8 needs torch to decode

        t_dtype = torch.float8_e4m3fn if dtype == "F8_E4M3" else torch.float8_e5m2
        values = torch.from_numpy(np.ascontiguousarray(values)).view(t_dtype).float().numpy()
    return values.reshape(shape)


def encode_plain(values: np.ndarray, dtype: str) -> np.ndarray:
    """Store numbers as a plain dtype's bytes (BF16 rounds to nearest even): uint8 (nbytes,)."""
    if dtype == "BF16":
        bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        return rounded.astype(np.uint16).reshape(-1).view(np.uint8)
    if dtype not in PLAIN_DTYPES or dtype.startswith("F8"):
        raise BadInput(f"cannot store values as {dtype}")
    np_dtype, _ = PLAIN_DTYPES[dtype]
    return np.ascontiguousarray(values, dtype=np.dtype(np_dtype)).reshape(-1).view(np.uint8)


class ModelReader(ABC):
    """A model opened for lazy, tensor-by-tensor reading. Use as a context manager.

    Attributes:
        path: the file or folder opened.
        format: ``gguf``, ``safetensors``, ``torch``, ``hf`` or ``organs``.
        arch: architecture name in GGUF spelling (``bert``, ``llama``) or None if unknown.
        metadata: key -> `MetaEntry`, carried over by the writers.
    """

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.arch: str | None = None
        self.metadata: dict[str, MetaEntry] = {}
        self._infos: dict[str, TensorInfo] = {}

    def _set_infos(self, infos: list[TensorInfo]) -> None:
        """Store the tensor list, filling in canonical names (needs `arch` set first)."""
        from genome.formats.names import canonical_names

        canon = canonical_names([i.name for i in infos], self.arch)
        self._infos = {i.name: replace(i, canonical=canon[i.name]) for i in infos}

    def tensors(self) -> list[TensorInfo]:
        """Every tensor, in file order."""
        return list(self._infos.values())

    def names(self) -> list[str]:
        """Every tensor name, in file order."""
        return list(self._infos)

    def info(self, name: str) -> TensorInfo:
        """The `TensorInfo` of `name`; `BadInput` if the model has no such tensor."""
        try:
            return self._infos[name]
        except KeyError:
            raise BadInput(f"{self.path}: no tensor named {name!r}") from None

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors())

    def __len__(self) -> int:
        return len(self._infos)

    @abstractmethod
    def raw(self, name: str) -> np.ndarray:
        """The tensor's stored bytes, exactly as in the file: uint8, (nbytes,)."""

    def array(self, name: str) -> np.ndarray:
        """The tensor's values in its logical shape; quantised types are dequantised to float32."""
        info = self.info(name)
        raw = self.raw(name)
        if info.quantized:
            from genome.formats.gguf_io import dequantize

            return dequantize(raw, info.dtype, info.shape)
        return decode_plain(raw, info.dtype, info.shape)

    def total_bytes(self) -> int:
        """Sum of stored tensor bytes."""
        return sum(i.nbytes for i in self._infos.values())

    def close(self) -> None:
        """Release file handles and memory maps."""

    def __enter__(self) -> ModelReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_nbytes(path: Path, info: TensorInfo) -> None:
    """Raise `BadInput` if a plain tensor's byte size disagrees with its shape and dtype."""
    if info.dtype in PLAIN_DTYPES:
        expected = info.numel * PLAIN_DTYPES[info.dtype][1]
        if expected != info.nbytes:
            raise BadInput(f"{path}: tensor {info.name!r} holds {info.nbytes} bytes, expected {expected} "
                           f"for shape {list(info.shape)} {info.dtype}")
