"""Whole-model transforms, tensor by tensor: purify a model, quantise a model (ternary or
BitDelta against a base) into a packed safetensors file, and load a packed file back.

Packed file layout (safetensors): a quantised tensor ``NAME`` is stored as ``NAME::packed`` (U8:
2-bit trits, or sign bits (R, ceil(C/8))) and ``NAME::scale`` (F32: () or (R, 1)); every other
tensor is stored unchanged. The ``cogitans.quant`` metadata entry (JSON) records the method, the
base model for BitDelta, and each quantised tensor's shape and original dtype.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genome.errors import BadInput
from genome.formats import MetaEntry, ModelReader, TensorInfo, open_model, write_model
from genome.formats.atomic import check_new_output
from genome.formats.base import PLAIN_DTYPES, encode_plain
from genome.purify import PurifyReport, purify_tensor
from genome.quantize import BitDelta, Ternary, bitdelta_decode, bitdelta_encode, report, ternary_decode, ternary_encode
from genome.taxonomy import classify_model, matches

QUANT_METHODS = ("absmean", "twn", "bitdelta")
DEFAULT_ORGANS = "organ,skeleton"
QUANT_KEY = "cogitans.quant"
Item = tuple[TensorInfo, Callable[[], np.ndarray]]


def select(reader: ModelReader, organs: str) -> list[TensorInfo]:
    """Float tensors of `reader` matching `organs`; `BadInput` if none do."""
    taxa = classify_model((i.name, i.canonical) for i in reader)
    chosen = [i for i in reader if i.is_float and matches(organs, i.name, i.canonical, taxa[i.name])]
    if not chosen:
        raise BadInput(f"--organs {organs!r} selects no float tensor of {reader.path}")
    return chosen


def _values(reader: ModelReader, name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(reader.array(name), dtype=np.float32))


def _keep(reader: ModelReader, info: TensorInfo) -> Item:
    return info, lambda n=info.name: reader.raw(n)


def purify_model(model: str | Path, out: str | Path, strength: float = 0.5, organs: str = DEFAULT_ORGANS,
                 n_probes: int = 64) -> list[tuple[str, PurifyReport]]:
    """Purify the selected tensors of a model and write the result (format by `out` suffix).

    Plain float tensors keep their dtype; quantised ones are written as F32.

    Returns:
        (name, `PurifyReport`) per purified tensor.
    """
    if not 0.0 <= strength <= 1.0:
        raise BadInput(f"--strength must be between 0 and 1, got {strength}")
    model, out = Path(model), check_new_output(Path(out), inputs=(Path(model),))
    reports: list[tuple[str, PurifyReport]] = []
    with open_model(model) as reader:
        chosen = {i.name for i in select(reader, organs)}
        items: list[Item] = []
        for info in reader:
            if info.name not in chosen:
                items.append(_keep(reader, info))
                continue
            dtype = info.dtype if info.dtype in PLAIN_DTYPES and not info.dtype.startswith("F8") else "F32"
            new = replace(info, dtype=dtype, nbytes=info.numel * PLAIN_DTYPES[dtype][1])

            def read(i: TensorInfo = info, d: str = dtype) -> np.ndarray:
                w_new, rep = purify_tensor(_values(reader, i.name), strength, n_probes)
                reports.append((i.name, rep))
                return encode_plain(w_new.numpy(), d)

            items.append((new, read))
        meta = dict(reader.metadata)
        meta["cogitans.purify.strength"] = MetaEntry(float(strength), "FLOAT32")
        meta["cogitans.purify.organs"] = MetaEntry(organs, "STRING")
        write_model(out, items, meta, reader.arch, {"path": str(model), "purified": strength})
    return reports


def _packed_sizes(info: TensorInfo, method: str, per_row: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n = info.numel
    if method != "bitdelta":
        return (-(-n // 4),), ()
    rows = info.shape[0] if per_row and len(info.shape) >= 2 else 1
    return (rows, -(-(n // rows) // 8)), (rows, 1)


def quantize_model(model: str | Path, out: str | Path, method: str = "absmean", organs: str = DEFAULT_ORGANS,
                   base: str | Path | None = None, per_row: bool = False) -> list[dict[str, Any]]:
    """Quantise the selected tensors into a packed safetensors file.

    Args:
        model: the model to compress (for BitDelta: the fine-tuned one).
        out: ``*.safetensors`` packed file.
        method: ``absmean`` or ``twn`` (ternary), or ``bitdelta`` (needs `base`).
        organs: tensor selection (see `taxonomy.matches`).
        base: BitDelta base model; each selected tensor's delta is model - base.
        per_row: BitDelta scale per row instead of per tensor.

    Returns:
        One row per quantised tensor: name, shape, original_bytes, packed_bytes, ratio,
        rel_error (of what was packed: the weights, or the delta for BitDelta) and
        weight_rel_error (of the reconstructed weights).
    """
    if method not in QUANT_METHODS:
        raise BadInput(f"--method {method!r}: expected one of {', '.join(QUANT_METHODS)}")
    if (method == "bitdelta") != (base is not None):
        raise BadInput("--base BASE is required for bitdelta and only for bitdelta")
    model, out = Path(model), Path(out)
    if out.suffix.lower() != ".safetensors":
        raise BadInput(f"output {out}: the packed format is safetensors; use a .safetensors suffix")
    check_new_output(out, inputs=(model,) + ((Path(base),) if base else ()))
    rows: list[dict[str, Any]] = []
    with open_model(model) as reader:
        base_reader = open_model(base) if base else None
        try:
            chosen = select(reader, organs)
            base_names = _match_base(chosen, base_reader) if base_reader is not None else {}
            chosen_names = {i.name for i in chosen}
            items: list[Item] = []
            record: dict[str, Any] = {}
            for info in reader:
                if info.name not in chosen_names:
                    items.append(_keep(reader, info))
                    continue
                packed_shape, scale_shape = _packed_sizes(info, method, per_row)
                cache: dict[str, Any] = {}

                def pack(i: TensorInfo = info, c: dict = cache) -> np.ndarray:
                    c["enc"] = _encode(reader, base_reader, base_names.get(i.name), i, method, per_row, rows)
                    enc = c["enc"]
                    return (enc.packed if isinstance(enc, Ternary) else enc.bits).numpy()

                def scale(c: dict = cache) -> np.ndarray:
                    return c.pop("enc").scale.numpy().astype(np.float32)

                n_packed = int(np.prod(packed_shape))
                items.append((TensorInfo(f"{info.name}::packed", packed_shape, "U8", n_packed), pack))
                items.append((TensorInfo(f"{info.name}::scale", scale_shape, "F32", 4 * int(np.prod(scale_shape))), scale))
                record[info.name] = {"shape": list(info.shape), "dtype": info.dtype,
                                     "base_name": base_names.get(info.name)}
            meta = dict(reader.metadata)
            meta[QUANT_KEY] = MetaEntry(json.dumps({"method": method, "per_row": per_row,
                                                    "base": str(base) if base else None, "tensors": record}), "STRING")
            write_model(out, items, meta, reader.arch)
        finally:
            if base_reader is not None:
                base_reader.close()
    return rows


def _match_base(chosen: list[TensorInfo], base: ModelReader) -> dict[str, str]:
    """model tensor name -> base tensor name (matched by canonical name); `BadInput` on a gap."""
    by_canon = {i.canonical: i for i in base}
    out = {}
    for info in chosen:
        other = by_canon.get(info.canonical)
        if other is None or other.shape != info.shape:
            got = "missing" if other is None else f"shape {list(other.shape)}"
            raise BadInput(f"base {base.path}: tensor {info.canonical!r} is {got}, expected shape {list(info.shape)}")
        out[info.name] = other.name
    return out


def _encode(reader: ModelReader, base: ModelReader | None, base_name: str | None, info: TensorInfo, method: str,
            per_row: bool, rows: list[dict[str, Any]]) -> Ternary | BitDelta:
    w = _values(reader, info.name)
    if base is None:
        enc: Ternary | BitDelta = ternary_encode(w, method)
        approx = ternary_decode(enc)
        rep = report(w, approx, info.nbytes, enc.nbytes)
        weight_err = rep.rel_error
    else:
        b = _values(base, base_name or info.name)
        enc = bitdelta_encode(w - b, per_row)
        approx_delta = bitdelta_decode(enc)
        rep = report(w - b, approx_delta, info.nbytes, enc.nbytes)
        weight_err = report(w, b + approx_delta, info.nbytes, enc.nbytes).rel_error
    rows.append({"name": info.name, "shape": list(info.shape), "original_bytes": rep.original_bytes,
                 "packed_bytes": rep.packed_bytes, "ratio": rep.ratio, "rel_error": rep.rel_error,
                 "weight_rel_error": weight_err})
    return enc


def load_quantized(path: str | Path, base: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Decode a packed file back to tensors (float32 for quantised ones).

    Args:
        path: file written by `quantize_model`.
        base: for BitDelta, the base model (default: the path recorded in the file).

    Returns:
        name -> tensor, every tensor of the original model.
    """
    from genome.quantize import Ternary as T

    with open_model(path) as reader:
        entry = reader.metadata.get("safetensors." + QUANT_KEY)
        if entry is None:
            raise BadInput(f"{path}: not a Cogitans packed file (no {QUANT_KEY} metadata)")
        spec = json.loads(entry.value)
        base = base or spec.get("base")
        base_reader = open_model(base) if spec["method"] == "bitdelta" else None
        out: dict[str, torch.Tensor] = {}
        try:
            for info in reader:
                name = info.name.rsplit("::", 1)[0]
                if info.name.endswith("::scale"):
                    continue
                if name not in spec["tensors"]:
                    out[name] = torch.from_numpy(np.array(reader.array(name)))
                    continue
                shape = tuple(spec["tensors"][name]["shape"])
                packed = torch.from_numpy(np.array(reader.raw(info.name))).reshape(info.shape)
                scale = torch.from_numpy(np.array(reader.array(name + "::scale")))
                if base_reader is None:
                    out[name] = ternary_decode(T(packed.reshape(-1), scale, shape, spec["method"]))
                else:
                    delta = bitdelta_decode(BitDelta(packed, scale, shape))
                    out[name] = _values(base_reader, spec["tensors"][name].get("base_name") or name) + delta
        finally:
            if base_reader is not None:
                base_reader.close()
    return out
