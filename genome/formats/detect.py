"""Open any supported model by looking at what it is, and write one by the output's suffix.

Formats are recognised by their bytes, not their names: ``GGUF`` magic, ``PK`` (zip) or a pickle
opcode for PyTorch, an 8-byte little-endian length followed by ``{`` for safetensors. A folder is
an organ folder (``manifest.json``) or a Hugging Face model folder; a lone safetensors or PyTorch
file takes its architecture from a ``config.json`` beside it, as in a Hugging Face folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from genome.errors import BadInput
from genome.formats.base import PLAIN_DTYPES, MetaEntry, ModelReader, TensorInfo

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
Items = Iterable[tuple[TensorInfo, Callable[[], np.ndarray]]]


def sniff(path: Path) -> str:
    """``gguf``, ``safetensors`` or ``torch`` for a model file; `BadInput` otherwise."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise BadInput(f"{path} is empty (0 bytes); expected a GGUF, safetensors or PyTorch model file")
    with path.open("rb") as fh:
        head = fh.read(9)
    suffix = path.suffix.lower()
    if head[:4] == b"GGUF":
        return "gguf"
    if suffix == ".gguf":
        raise BadInput(f"{path}: not a GGUF file: magic {head[:4]!r}, expected b'GGUF'")
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"):
        return "safetensors"  # the reader checks the header and says what is wrong
    if suffix in _TORCH_SUFFIXES:
        raise BadInput(f"{path}: not a PyTorch checkpoint: expected a zip archive or a pickle, "
                       f"found bytes {head[:4]!r}")
    raise BadInput(f"{path}: unrecognised model file (starts with {head[:4]!r}); expected GGUF, "
                   f"safetensors, a PyTorch checkpoint, a Hugging Face folder or an organ folder")


def open_model(path: str | Path) -> ModelReader:
    """Open a model file or folder for lazy reading.

    Args:
        path: GGUF, safetensors or PyTorch file; Hugging Face model folder; organ folder.

    Returns:
        A `ModelReader`; close it (or use ``with``) when done.

    Raises:
        BadInput: missing, empty, truncated, corrupt or unsupported input.
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no such file or folder: {path}")
    if path.is_dir():
        if (path / "manifest.json").is_file():
            from genome.formats.organ_dir import OrganDirModel

            return OrganDirModel(path)
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs and not any(path.glob("*.safetensors")) and len(ggufs) == 1:
            return open_model(ggufs[0])
        from genome.formats.hf_folder import HFFolderModel

        return HFFolderModel(path)
    kind = sniff(path)
    if kind == "gguf":
        from genome.formats.gguf_io import GGUFModel

        return GGUFModel(path)
    from genome.formats.hf_folder import apply_sibling_config

    if kind == "safetensors":
        from genome.formats.safetensors_io import SafetensorsModel

        return apply_sibling_config(SafetensorsModel(path))
    from genome.formats.torch_io import TorchModel

    return apply_sibling_config(TorchModel(path))


def output_kind(out: Path) -> str:
    """``gguf``, ``safetensors`` or ``organs`` (a folder) from the output path's suffix."""
    suffix = Path(out).suffix.lower()
    if suffix == ".gguf":
        return "gguf"
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == "":
        return "organs"
    raise BadInput(f"output {out}: expected a .gguf or .safetensors file, or a folder name without suffix")


def plain_items(items: Items) -> list[tuple[TensorInfo, Callable[[], np.ndarray]]]:
    """Quantised tensors dequantised to F32 (for formats that only hold plain dtypes)."""
    from dataclasses import replace

    from genome.formats.gguf_io import dequantize

    out = []
    for info, read in items:
        if info.dtype in PLAIN_DTYPES:
            out.append((info, read))
            continue
        new = replace(info, dtype="F32", nbytes=info.numel * 4)
        out.append((new, lambda i=info, r=read: dequantize(r(), i.dtype, i.shape)))
    return out


def write_model(out: Path, items: Items, metadata: dict[str, MetaEntry], arch: str | None,
                source: dict | None = None) -> str:
    """Write tensors to `out` in the format its suffix names (atomically).

    Args:
        out: ``*.gguf``, ``*.safetensors``, or a folder (organ folder).
        items: (info, read raw bytes) per tensor, in output order.
        metadata: carried over into the output.
        arch: architecture name, or None.
        source: provenance for an organ folder's manifest.

    Returns:
        The kind written: ``gguf``, ``safetensors`` or ``organs``.
    """
    kind = output_kind(out)
    if kind == "gguf":
        from genome.formats.gguf_io import write_gguf

        write_gguf(out, items, metadata, arch)
    elif kind == "safetensors":
        from genome.formats.safetensors_io import write_safetensors

        write_safetensors(out, plain_items(items), metadata)
    else:
        from genome.formats.organ_dir import write_organ_dir

        write_organ_dir(out, items, metadata, arch, source or {})
    return kind


def items_of(reader: ModelReader) -> list[tuple[TensorInfo, Callable[[], np.ndarray]]]:
    """Every tensor of `reader` as (info, read raw bytes), in file order."""
    return [(info, lambda n=info.name: reader.raw(n)) for info in reader.tensors()]
