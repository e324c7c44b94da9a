"""Blob codecs: how a gene's payload is stored in a pack (raw, zstd, or zstd over byte planes).

`choose_codec` probes a tensor's middle block once: float32 weights seldom shrink by the 10%
that pays for decompression, so they are stored raw; `encode_blob` / `decode_blob` convert.
"""

from __future__ import annotations

import threading

import numpy as np
import zstandard

#: blob codecs: raw bytes, zstd, zstd over 4-byte-lane byte planes (float32 bit patterns).
RAW, ZSTD, ZSTD_SHUFFLE4 = 0, 1, 2


def encode_blob(payload: bytes | memoryview, codec: int, level: int = 1) -> bytes:
    """Stored bytes of a payload under `codec`."""
    if codec == RAW:
        return bytes(payload)
    if codec == ZSTD_SHUFFLE4:
        arr = np.frombuffer(payload, np.uint8)
        if len(arr) % 4:
            raise ValueError("ZSTD_SHUFFLE4 needs a payload of whole 4-byte lanes")
        payload = np.ascontiguousarray(arr.reshape(-1, 4).T).tobytes()
    return _compressor(level).compress(payload)


_LOCAL = threading.local()  # a ZstdCompressor must not be shared between threads


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_LOCAL, "compressors", None)
    if cache is None:
        cache = _LOCAL.compressors = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level)
    return c


def decode_blob(stored: bytes, codec: int, size: int) -> bytes:
    """Inverse of `encode_blob`; raises zstandard.ZstdError or ValueError on damage."""
    if codec == RAW:
        return stored
    data = zstandard.ZstdDecompressor().decompress(stored, max_output_size=size)
    if len(data) != size:
        raise ValueError(f"decompressed {len(data)} bytes, expected {size}")
    if codec == ZSTD_SHUFFLE4:
        data = np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(4, -1).T).tobytes()
    return data


def choose_codec(sample: bytes | memoryview, gain: float) -> tuple[int, float]:
    """(codec, compression ratio) for blobs like `sample` (a tensor's middle block): zstd if its
    first 4 KiB shrink by the factor `gain`, else raw (ratio 1)."""
    sample = sample[:4096]
    if not len(sample):
        return RAW, 1.0
    ratio = len(sample) / len(encode_blob(sample, ZSTD))
    return (ZSTD, ratio) if ratio >= gain else (RAW, 1.0)
