"""GGUF: a validating, memory-mapped reader (gguf's `GGUFReader`) and a streaming writer.

The reader checks what `GGUFReader` would otherwise trip over with an obscure error: short
reads in the header, unknown quantisation type ids, tensor data past the end of the file, and
big-endian files. Every quantised type that `gguf.quants` knows is dequantised on request.

The writer streams one tensor at a time through `GGUFWriter` (32-byte alignment), carries the
metadata over, names tensors canonically and keeps the original names in
``cogitans.source_names`` so that a round trip restores them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from genome.errors import BadInput
from genome.formats.atomic import atomic_file
from genome.formats.base import MetaEntry, ModelReader, TensorInfo

SOURCE_NAMES_KEY = "cogitans.source_names"
ALIGNMENT = 32
_SKIP_KEYS = ("GGUF.", "general.architecture", "general.alignment", SOURCE_NAMES_KEY)


class _Truncated(Exception):
    """A header read ran past the end of the file."""


def _checked_reader_class() -> type:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.gguf_reader import GGUFReader

    class CheckedReader(GGUFReader):
        """`GGUFReader` that fails cleanly on short reads, unknown types and out-of-file data."""

        def _get(self, offset: int, dtype: Any, count: int = 1, override_order: Any = None) -> Any:
            """`GGUFReader._get` with a bounds check, slicing a plain-ndarray view of the memory
            map: slicing the `np.memmap` itself runs two Python methods per header value, which
            made up half of opening a 104-tensor file (23 ms)."""
            dtype, offset, count = np.dtype(dtype), int(offset), int(count)
            end = offset + dtype.itemsize * count
            if offset < 0 or end > len(self.data):
                raise _Truncated(f"needs bytes {offset}..{end}, file has {len(self.data)}")
            plain = self.__dict__.get("_cg_plain")
            if plain is None:
                plain = self._cg_plain = self.data.view(np.ndarray)
            arr = plain[offset:end].view(dtype)
            return arr.view(arr.dtype.newbyteorder(self.byte_order if override_order is None else override_order))

        def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
            size = len(self.data)
            for fld in fields:
                _nlen, name_data, _ndims, dims, raw_dtype, offset = fld.parts
                name = bytes(name_data).decode("utf-8", "replace")
                code = int(raw_dtype[0])
                try:
                    qtype = GGMLQuantizationType(code)
                except ValueError:
                    raise BadInput(f"{self._cg_path}: tensor {name!r} has unknown quantisation type id "
                                   f"{code}; expected one of the GGML types gguf knows") from None
                if qtype not in GGML_QUANT_SIZES:
                    raise BadInput(f"{self._cg_path}: tensor {name!r} uses type {qtype.name} with no known size")
                block, type_size = GGML_QUANT_SIZES[qtype]
                n_el = int(np.prod(dims.astype(np.int64))) if len(dims) else 1
                if n_el % block:
                    raise BadInput(f"{self._cg_path}: tensor {name!r} has {n_el} elements, not a multiple "
                                   f"of the {qtype.name} block size {block}")
                begin = int(start_offs) + int(offset[0])
                end = begin + n_el // block * type_size
                if end > size:
                    raise BadInput(f"{self._cg_path}: tensor {name!r} data ends at byte {end}, past the end "
                                   f"of the file ({size} bytes); the file is truncated or corrupt")
            super()._build_tensors(start_offs, fields)

        def __init__(self, path: Path) -> None:
            self._cg_path = path
            super().__init__(path, "r")

    return CheckedReader


class GGUFModel(ModelReader):
    """A GGUF file, memory-mapped; tensors are read lazily."""

    format = "gguf"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._reader = _checked_reader_class()(self.path)
        except BadInput:
            raise
        except (_Truncated, IndexError) as err:
            raise BadInput(f"{self.path}: truncated GGUF header ({err})") from None
        except (ValueError, KeyError, OverflowError, UnicodeDecodeError) as err:
            raise BadInput(f"{self.path}: corrupt GGUF header: {err}") from None
        if self._reader.byte_order != "I":
            raise BadInput(f"{self.path}: big-endian GGUF files are not supported")
        self.metadata = _fields_to_metadata(self._reader.fields)
        arch = self.metadata.get("general.architecture")
        self.arch = str(arch.value) if arch else None
        stored = [t.name for t in self._reader.tensors]
        names = stored
        src = self.metadata.pop(SOURCE_NAMES_KEY, None)  # restored as names, regenerated on write
        if src is not None and isinstance(src.value, list) and len(src.value) == len(stored) \
                and len(set(src.value)) == len(stored):
            names = [str(n) for n in src.value]
        self._by_name = dict(zip(names, self._reader.tensors))
        self._set_infos([
            TensorInfo(name=n, shape=tuple(int(d) for d in reversed(t.shape.tolist())),
                       dtype=t.tensor_type.name, nbytes=int(t.n_bytes))
            for n, t in self._by_name.items()
        ])

    def stored_name(self, name: str) -> str:
        """The name under which `name` is stored in this file."""
        return self._by_name[self.info(name).name].name

    def data_offset(self, name: str) -> int:
        """Absolute byte offset of the tensor's data in the file."""
        return int(self._by_name[self.info(name).name].data_offset)

    def raw(self, name: str) -> np.ndarray:
        """Stored bytes, a zero-copy view of the memory map: uint8, (nbytes,)."""
        t = self._by_name[self.info(name).name]
        return self._reader.data[t.data_offset: t.data_offset + t.n_bytes]

    def close(self) -> None:
        """Drop the memory map."""
        self._reader = None  # type: ignore[assignment]
        self._by_name = {}


def _fields_to_metadata(fields: dict[str, Any]) -> dict[str, MetaEntry]:
    out: dict[str, MetaEntry] = {}
    for key, fld in fields.items():
        if key.startswith("GGUF.") or not fld.types:
            continue
        main = fld.types[0].name
        sub = fld.types[-1].name if main == "ARRAY" and len(fld.types) > 1 else None
        if main == "ARRAY" and len(fld.types) > 2:
            continue  # nested arrays: gguf's reader flattens them, so they cannot be carried over
        try:
            value = fld.contents()
        except UnicodeDecodeError:
            continue
        out[key] = MetaEntry(value, main, sub)
    return out


def dequantize(raw: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Dequantise GGML blocks to float32.

    Args:
        raw: stored bytes, uint8 (nbytes,).
        dtype: GGML type name (``Q8_0``, ``Q4_K``, ``TQ2_0`` ...).
        shape: logical shape; its last dimension is a whole number of blocks.

    Returns:
        float32 array of `shape`.
    """
    from gguf import quants
    from gguf.constants import GGMLQuantizationType

    qtype = GGMLQuantizationType[dtype]
    try:
        byte_shape = quants.quant_shape_to_byte_shape(shape or (1,), qtype)
        return quants.dequantize(raw.reshape(byte_shape), qtype).reshape(shape)
    except NotImplementedError:
        raise BadInput(f"GGML type {dtype} cannot be dequantised by gguf {_gguf_version()}") from None


def dequantize_blocks(raw: np.ndarray, dtype: str, blocks: np.ndarray) -> np.ndarray:
    """Dequantise only the chosen blocks of a quantised tensor: float32 (len(blocks), block_size)."""
    from gguf import quants
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    qtype = GGMLQuantizationType[dtype]
    _, type_size = GGML_QUANT_SIZES[qtype]
    try:
        return quants.dequantize(raw.reshape(-1, type_size)[blocks], qtype)
    except NotImplementedError:
        raise BadInput(f"GGML type {dtype} cannot be dequantised by gguf {_gguf_version()}") from None


def _gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")


def write_gguf(out: Path, items: Iterable[tuple[TensorInfo, Callable[[], np.ndarray]]],
               metadata: dict[str, MetaEntry], arch: str | None) -> Path:
    """Write a GGUF file atomically, streaming one tensor at a time.

    Args:
        out: target file.
        items: (info, read raw bytes) per tensor, in output order.
        metadata: carried over; GGUF bookkeeping keys are regenerated.
        arch: ``general.architecture`` (``unknown`` if None).

    Returns:
        `out`.

    Raises:
        BadInput: a dtype GGUF cannot hold (U8, BOOL, F8 ...).
    """
    from gguf.constants import GGMLQuantizationType, GGUFValueType
    from gguf.gguf_writer import GGUFWriter

    items = list(items)
    stored: list[str] = []
    seen: set[str] = set()
    for info, _ in items:
        if info.dtype not in GGMLQuantizationType.__members__:
            raise BadInput(f"tensor {info.name!r} has dtype {info.dtype}, which GGUF cannot store "
                           f"(expected F32, F16, BF16, F64, I8-I64 or a GGML quantised type)")
        name = info.canonical or info.name
        name = info.name if name in seen else name
        seen.add(name)
        stored.append(name)
    with atomic_file(out) as tmp:
        writer = GGUFWriter(tmp, arch or "unknown")
        writer.add_custom_alignment(ALIGNMENT)
        for key, entry in metadata.items():
            if key.startswith(_SKIP_KEYS) or (entry.type == "ARRAY" and not entry.value):
                continue
            sub = GGUFValueType[entry.sub_type] if entry.sub_type else None
            writer.add_key_value(key, entry.value, GGUFValueType[entry.type], sub)
        if stored != [info.name for info, _ in items]:
            writer.add_key_value(SOURCE_NAMES_KEY, [info.name for info, _ in items],
                                 GGUFValueType.ARRAY, GGUFValueType.STRING)
        for name, (info, _) in zip(stored, items):
            qtype = GGMLQuantizationType[info.dtype]
            writer.add_tensor_info(name, _byte_shape(info, qtype), np.dtype(np.uint8), info.nbytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for info, read in items:
            raw = np.ascontiguousarray(read()).reshape(-1).view(np.uint8)
            if raw.nbytes != info.nbytes:
                raise BadInput(f"tensor {info.name!r}: got {raw.nbytes} bytes, expected {info.nbytes}")
            writer.write_tensor_data(raw)
        writer.close()
    return Path(out)


def _byte_shape(info: TensorInfo, qtype: Any) -> tuple[int, ...]:
    from gguf.constants import GGML_QUANT_SIZES

    block, type_size = GGML_QUANT_SIZES[qtype]
    shape = info.shape or (1,)
    if shape[-1] % block:
        raise BadInput(f"tensor {info.name!r}: last dimension {shape[-1]} is not a multiple of the "
                       f"{qtype.name} block size {block}")
    return (*shape[:-1], shape[-1] // block * type_size)
