"""PyTorch checkpoints, read with ``torch.load(weights_only=True, mmap=True)``.

Only plain tensors (in nested dicts or lists) are accepted: a pickle that names any other global
(a class, a function such as ``os.system``) is refused by torch's weights-only unpickler and
becomes a `BadInput`. Nothing in this module ever runs ``pickle.load``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from genome.errors import BadInput
from genome.formats.base import MetaEntry, ModelReader, TensorInfo

_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
    "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
    "uint16": "U16", "uint32": "U32", "uint64": "U64",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}


class TorchModel(ModelReader):
    """A ``.pt``/``.bin``/``.pth`` checkpoint of plain tensors; zip checkpoints are memory-mapped."""

    format = "torch"

    def __init__(self, path: Path, arch: str | None = None) -> None:
        super().__init__(path)
        self.arch = arch
        obj = _load(self.path)
        tensors: dict[str, Any] = {}
        _flatten(obj, "", tensors)
        if not tensors:
            raise BadInput(f"{self.path}: the checkpoint holds no tensors")
        for key in ("state_dict", "model", "module"):
            inner = {k[len(key) + 1:]: v for k, v in tensors.items() if k.startswith(key + ".")}
            if inner and len(inner) == len(tensors):
                tensors = inner  # unwrap {"state_dict": {...}} style checkpoints
        self._tensors = tensors
        infos = []
        for name, t in tensors.items():
            dtype = _DTYPES.get(str(t.dtype).removeprefix("torch."))
            if dtype is None:
                raise BadInput(f"{self.path}: tensor {name!r} has unsupported dtype {t.dtype}")
            infos.append(TensorInfo(name=name, shape=tuple(t.shape), dtype=dtype,
                                    nbytes=t.numel() * t.element_size()))
        self.metadata = {"cogitans.torch_checkpoint": MetaEntry(self.path.name, "STRING")}
        self._set_infos(infos)

    def raw(self, name: str) -> np.ndarray:
        """Stored bytes (a view of the memory map when the tensor is contiguous): uint8, (nbytes,)."""
        import torch

        self.info(name)
        t = self._tensors[name].detach().contiguous().reshape(-1)
        return t.view(torch.uint8).numpy()

    def close(self) -> None:
        """Drop the tensors (and with them the memory map)."""
        self._tensors = {}


def _load(path: Path) -> Any:
    import torch

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err) and "zip" not in str(err):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reason = next((ln.strip() for ln in str(err).splitlines() if "Unsupported" in ln or "GLOBAL" in ln), first)
        raise BadInput(f"{path}: refused: not a plain-tensor checkpoint, the pickle holds code or objects "
                       f"({reason})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInput(f"{path}: not a readable PyTorch checkpoint: {msg}") from None


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix or "tensor"] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}.{i}" if prefix else str(i), out)
