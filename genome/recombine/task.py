"""What a merge method works on: one output tensor's sources, parameters, and chunks of values.

Layout. Every source is viewed as (G, N): G independent groups of N values each. Merging a model
tensor is one group (G = 1, N = numel); breeding agents merges G parent pairs at once, one group
per child (each row of a flat (G, P) parameter tensor). Per-tensor statistics (a magnitude
threshold, a SLERP angle) are per group: shape (M, G) or (G,).

Streaming. A large tensor is read in chunks of whole rows along N, so peak memory is a few chunks
plus the output, not the inputs. `MergeTask.chunks()` may be iterated several times (methods that
need statistics make a pass first). Reading a chunk copies it out of the memory map and drops the
mapped pages again, so a finished chunk of the input no longer counts in the process's RSS.
"""

from __future__ import annotations

import mmap
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genome.errors import BadInput
from genome.formats.base import ModelReader, decode_plain

#: Values per group read at once for a streamed tensor (256k float32 = 1 MB per source).
CHUNK_ELEMS = 1 << 18


class Source:
    """A (G, N) float32 view of one input tensor, read by ranges of N."""

    groups: int
    numel: int  # N
    row: int  # chunk boundaries are multiples of this (a row of the original tensor)
    row_len: int  # length of a "row" for row-wise statistics (last dim; N for vectors)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Values [start, stop) of every group: float32 (G, stop - start), a private copy."""
        out = torch.empty(self.groups, stop - start)
        self.read_into(start, stop, out)
        return out

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> None:
        """Write values [start, stop) of every group into `out` (G, stop - start)."""
        out.copy_(self.read(start, stop))


class TensorSource(Source):
    """An in-memory tensor; with `grouped`, dim 0 is the group axis."""

    def __init__(self, t: torch.Tensor, grouped: bool = False) -> None:
        self.t = t.reshape(t.shape[0], -1) if grouped else t.reshape(1, -1)
        self.groups, self.numel = self.t.shape
        self.row = 1 if grouped or t.dim() < 2 else int(np.prod(t.shape[1:]))
        self.row_len = self.numel if grouped or t.dim() < 2 else t.shape[-1]

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> None:
        out.copy_(self.t[:, start:stop])


class ReaderSource(Source):
    """One tensor of an open model, read lazily (quantised rows dequantised on the way)."""

    def __init__(self, reader: ModelReader, name: str) -> None:
        self.reader, self.info = reader, reader.info(name)
        shape = self.info.shape or (1,)
        self.groups, self.numel = 1, self.info.numel
        self.row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        self.row_len = shape[-1] if len(shape) > 1 else self.numel
        self._bytes_per_row = self.info.nbytes // max(shape[0], 1)

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> None:
        info = self.info
        raw = self.reader.raw(info.name)
        if info.quantized:  # whole rows only: a row is a whole number of blocks
            from genome.formats.gguf_io import dequantize

            a, b = start // self.row, -(-stop // self.row)
            part = raw[a * self._bytes_per_row: b * self._bytes_per_row]
            values = dequantize(part, info.dtype, (b - a, *info.shape[1:])).reshape(-1)
            values = values[start - a * self.row: stop - a * self.row]
        else:
            size = info.nbytes // max(info.numel, 1)
            part = raw[start * size: stop * size]
            values = decode_plain(part, info.dtype, (stop - start,))
        out.numpy()[0] = values  # one copy, converting to float32 on the way
        release_pages(part)


class PaddedSource(Source):
    """A (rows, cols) source grown to more rows; new rows hold the mean of the source's rows."""

    def __init__(self, src: Source, rows: int, cols: int) -> None:
        self.src, self.cols = src, cols
        self.groups, self.numel, self.row, self.row_len = src.groups, rows * cols, cols, cols
        self._mean: torch.Tensor | None = None

    def _mean_row(self) -> torch.Tensor:
        if self._mean is None:
            total = torch.zeros(self.groups, self.cols, dtype=torch.float64)
            step = max(CHUNK_ELEMS // self.cols, 1) * self.cols
            for a in range(0, self.src.numel, step):
                block = self.src.read(a, min(a + step, self.src.numel))
                total += block.view(self.groups, -1, self.cols).sum(1, dtype=torch.float64)
            self._mean = (total / max(self.src.numel // self.cols, 1)).float()  # (G, cols)
        return self._mean

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> None:
        have = min(stop, self.src.numel)
        if start < have:
            self.src.read_into(start, have, out[:, : have - start])
        if stop > max(start, have):
            first = max(start, have)
            out[:, first - start:].view(self.groups, -1, self.cols).copy_(self._mean_row().unsqueeze(1))


def release_pages(view: np.ndarray) -> int:
    """Drop the memory-mapped file pages under `view` from this process; returns the bytes advised
    (0 if `view` is not backed by an `mmap.mmap`, as an `np.memmap` or `np.frombuffer` of one).

    The pages stay in the page cache; touching them again maps them back in. This keeps a
    streamed merge's resident memory at a few chunks however large the inputs are.
    """
    base = view
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):  # np.frombuffer(mmap) ends in a memoryview of the map
        base = base.obj
    if not isinstance(base, mmap.mmap) or view.nbytes == 0 or len(base) == 0:
        return 0
    map_start = np.frombuffer(base, np.uint8, count=1).ctypes.data
    lo = view.ctypes.data - map_start
    hi = min(lo + view.nbytes, len(base))
    lo -= lo % mmap.PAGESIZE
    try:
        base.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (OSError, ValueError, AttributeError):  # not Linux, or a closed map: only a hint
        return 0
    return hi - lo


@dataclass(frozen=True)
class Chunk:
    """Values [start, stop) of every group. xs: (M, G, L) models; base: (G, L) or None."""

    start: int
    stop: int
    xs: torch.Tensor
    base: torch.Tensor | None
    index: int  # chunk number, for seeding per-chunk random draws


@dataclass
class MergeTask:
    """One output tensor to merge.

    Attributes:
        name: output tensor name (errors, seeds).
        sources: the non-base models, in config order (M of them).
        base: the base model's tensor, or None.
        params: per source, the resolved per-model parameters (``weight``, ``density`` ...).
        options: the resolved global parameters and the method's variant choices.
        seed: seed of random methods (DARE); a tensor's draws are seeded from (seed, name, chunk).
        chunk_elems: values per group read at once; None reads everything in one chunk.
    """

    name: str
    sources: list[Source]
    base: Source | None = None
    params: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    chunk_elems: int | None = CHUNK_ELEMS

    def __post_init__(self) -> None:
        every = self.sources + ([self.base] if self.base is not None else [])
        shapes = {(s.groups, s.numel) for s in every}
        if len(shapes) != 1:
            raise BadInput(f"tensor {self.name!r}: sources differ in size: {sorted(shapes)}")
        self.groups, self.numel = shapes.pop()
        self.row = max(max(s.row, s.row_len) for s in every)  # chunks hold whole rows
        self.row_len = every[0].row_len
        while len(self.params) < len(self.sources):
            self.params.append({})
        self._single: Chunk | None = None

    @property
    def n_chunks(self) -> int:
        step = self._step()
        return max(-(-self.numel // step), 1)

    def _step(self) -> int:
        if self.chunk_elems is None or self.numel <= self.chunk_elems:
            return max(self.numel, 1)
        return max(self.chunk_elems // self.row, 1) * self.row

    def chunks(self) -> Iterator[Chunk]:
        """Chunks in order; each holds private float32 copies of its values (do not modify them).

        A tensor that fits in one chunk is read once and kept for the next pass.
        """
        if self._single is not None:
            yield self._single
            return
        step = self._step()
        for i, a in enumerate(range(0, max(self.numel, 1), step)):
            b = min(a + step, self.numel)
            xs = torch.empty(len(self.sources), self.groups, b - a)  # (M, G, L)
            for j, s in enumerate(self.sources):
                s.read_into(a, b, xs[j])
            base = self.base.read(a, b) if self.base is not None else None
            chunk = Chunk(a, b, xs, base, i)
            if self.n_chunks == 1:
                self._single = chunk
            yield chunk

    def param(self, key: str) -> torch.Tensor:
        """A per-model parameter as a float32 (M,) tensor."""
        return torch.tensor([float(p[key]) for p in self.params], dtype=torch.float32)

    def generator(self, chunk: Chunk) -> torch.Generator:
        """A generator seeded from (seed, tensor name, chunk index): same config, same draws."""
        key = zlib.crc32(f"{self.seed}:{self.name}:{chunk.index}".encode())
        return torch.Generator().manual_seed(key)
