"""safetensors: a lazy reader (validated by `safe_open`, raw bytes memory-mapped) and a
streaming writer that never holds more than one tensor.

`safe_open` checks the header and the data layout; the byte offsets it does not expose are taken
from the same JSON header, so `raw` is a zero-copy view of the file.
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from genome.errors import BadInput
from genome.formats.atomic import atomic_file
from genome.formats.base import (
    PLAIN_DTYPES,
    MetaEntry,
    ModelReader,
    TensorInfo,
    check_nbytes,
)

META_PREFIX = "safetensors."
_MAX_HEADER = 100_000_000
_GGUF_BOOKKEEPING = ("general.alignment", "cogitans.source_names")  # the limit the safetensors library itself enforces


class SafetensorsModel(ModelReader):
    """One ``.safetensors`` file."""

    format = "safetensors"

    def __init__(self, path: Path, arch: str | None = None) -> None:
        super().__init__(path)
        from safetensors import SafetensorError, safe_open

        header, header_len = _read_header(self.path)
        try:
            with safe_open(str(self.path), framework="numpy") as handle:
                st_meta = handle.metadata() or {}
        except SafetensorError as err:
            raise BadInput(f"{self.path}: not a valid safetensors file: {err}") from None
        self.arch = arch
        self.metadata = {META_PREFIX + k: MetaEntry(str(v), "STRING") for k, v in st_meta.items()}
        self._base = 8 + header_len
        self._offsets: dict[str, tuple[int, int]] = {}
        infos = []
        for name, spec in header.items():
            if name == "__metadata__":
                continue
            begin, end = (int(x) for x in spec["data_offsets"])
            self._offsets[name] = (begin, end)
            info = TensorInfo(name=name, shape=tuple(int(d) for d in spec["shape"]),
                              dtype=str(spec["dtype"]), nbytes=end - begin)
            if info.dtype not in PLAIN_DTYPES:
                raise BadInput(f"{self.path}: tensor {name!r} has unknown dtype {info.dtype}")
            check_nbytes(self.path, info)
            infos.append(info)
        infos.sort(key=lambda i: self._offsets[i.name][0])  # file order
        self._set_infos(infos)
        self._map = _map_file(self.path) if infos else np.zeros(0, np.uint8)

    def raw(self, name: str) -> np.ndarray:
        """Stored bytes, a zero-copy read-only view of the memory map: uint8, (nbytes,)."""
        self.info(name)
        begin, end = self._offsets[name]
        return self._map[self._base + begin: self._base + end]

    def close(self) -> None:
        """Drop the memory map."""
        self._map = np.zeros(0, np.uint8)


def _map_file(path: Path) -> np.ndarray:
    """The whole file memory-mapped read-only as a plain uint8 array (its slices are plain arrays:
    slicing an `np.memmap` costs tens of microseconds in `__array_finalize__`)."""
    with path.open("rb") as fh:
        return np.frombuffer(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)


def _read_header(path: Path) -> tuple[dict, int]:
    """The JSON header and its length in bytes; `BadInput` if either is broken."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise BadInput(f"{path}: truncated safetensors header ({size} bytes; expected at least 8)")
        n = struct.unpack("<Q", head)[0]
        if n > min(size - 8, _MAX_HEADER):
            raise BadInput(f"{path}: safetensors header length {n} runs past the end of the file "
                           f"({size} bytes); the file is truncated or not safetensors")
        blob = fh.read(n)
    try:
        header = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"{path}: safetensors header is not valid JSON: {err}") from None
    if not isinstance(header, dict):
        raise BadInput(f"{path}: safetensors header is not a JSON object")
    return header, int(n)


def write_safetensors(out: Path, items: Iterable[tuple[TensorInfo, Callable[[], np.ndarray]]],
                      metadata: dict[str, MetaEntry] | None = None) -> Path:
    """Write a safetensors file atomically, one tensor at a time.

    Args:
        out: target file.
        items: (info, read raw bytes) per tensor, in output order; plain dtypes only.
        metadata: carried into ``__metadata__``: ``safetensors.*`` keys lose their prefix, strings
            stay strings, anything else is stored as JSON text.

    Returns:
        `out`.

    Raises:
        BadInput: a quantised dtype (dequantise first) or a duplicate name.
    """
    items = list(items)
    header: dict[str, object] = {}
    offset = 0
    for info, _ in items:
        if info.dtype not in PLAIN_DTYPES:
            raise BadInput(f"tensor {info.name!r} is {info.dtype}; safetensors holds plain dtypes only")
        if info.name in header:
            raise BadInput(f"duplicate tensor name {info.name!r}")
        header[info.name] = {"dtype": info.dtype, "shape": list(info.shape),
                             "data_offsets": [offset, offset + info.nbytes]}
        offset += info.nbytes
    meta = _flatten_metadata(metadata or {})
    if meta:
        header["__metadata__"] = meta
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with atomic_file(out) as tmp, tmp.open("wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for info, read in items:
            raw = np.ascontiguousarray(read()).reshape(-1).view(np.uint8)
            if raw.nbytes != info.nbytes:
                raise BadInput(f"tensor {info.name!r}: got {raw.nbytes} bytes, expected {info.nbytes}")
            fh.write(memoryview(raw))
    return Path(out)


def _flatten_metadata(metadata: dict[str, MetaEntry]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, entry in metadata.items():
        if key in _GGUF_BOOKKEEPING:
            continue
        key = key.removeprefix(META_PREFIX)
        out[key] = entry.value if isinstance(entry.value, str) else json.dumps(entry.value)
    return out
