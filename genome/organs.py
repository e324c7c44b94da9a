"""Organs: take a model apart (extract), move organs between models (graft), put one back
together (assemble), and describe one (anatomy).

All of it streams tensor by tensor through the `genome.formats` readers and writers, and every
output is written atomically: a failed command leaves no file or folder behind, and inputs are
never changed in place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genome.errors import BadInput
from genome.formats import MetaEntry, ModelReader, items_of, open_model, output_kind, write_model, write_organ_dir
from genome.formats.atomic import atomic_file, check_new_output
from genome.measure import Workspace, measure_tensor
from genome.taxonomy import ROLES, classify_model, matches


def anatomy(reader: ModelReader, measure: bool = True, organs: str | None = None) -> list[dict[str, Any]]:
    """One row per tensor: name, canonical, role, domain, subtype, shape, dtype, nbytes, numel,
    and (with `measure`) the `Measure` fields. `organs` filters rows (see `taxonomy.matches`)."""
    taxa = classify_model((i.name, i.canonical) for i in reader)
    rows, ws = [], Workspace()
    for info in reader:
        taxon = taxa[info.name]
        if organs and not matches(organs, info.name, info.canonical, taxon):
            continue
        row: dict[str, Any] = {"name": info.name, "canonical": info.canonical, "role": taxon.role,
                               "domain": taxon.domain, "subtype": taxon.subtype, "shape": list(info.shape),
                               "dtype": info.dtype, "nbytes": info.nbytes, "numel": info.numel}
        if measure:
            row.update(_measure(reader, info, workspace=ws) or {"tier": "?"})
        rows.append(row)
    return rows


def _measure(reader: ModelReader, info: Any, raw: np.ndarray | None = None,
             workspace: Workspace | None = None) -> dict[str, Any] | None:
    """`Measure` fields, or None for a type gguf cannot dequantise (its bytes still copy through)."""
    try:
        return measure_tensor(reader.raw(info.name) if raw is None else raw, info, workspace=workspace).as_dict()
    except BadInput:
        return None


def totals_by_role(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """role -> {tensors, params, bytes}, roles in `ROLES` order, empty roles left out."""
    out = {role: {"tensors": 0, "params": 0, "bytes": 0} for role in ROLES}
    for row in rows:
        t = out[row["role"]]
        t["tensors"] += 1
        t["params"] += int(row["numel"])
        t["bytes"] += int(row["nbytes"])
    return {k: v for k, v in out.items() if v["tensors"]}


def _source(path: Path, reader: ModelReader) -> dict[str, Any]:
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"path": str(path), "format": reader.format, "arch": reader.arch, "bytes": size,
            "tensors": len(reader), "tensor_bytes": reader.total_bytes()}


def extract(model: str | Path, out_dir: str | Path, measure: bool = True) -> dict[str, Any]:
    """Write one ``.bin`` per tensor and ``manifest.json`` into `out_dir`.

    Args:
        model: any readable model (file or folder).
        out_dir: folder to create (must be absent or empty).
        measure: add entropy/kurtosis/theta/score/tier per tensor (sampled, cheap).

    Returns:
        The manifest (names, canonical names, roles, shapes, dtypes, byte sizes, BLAKE3 hashes,
        measurements, totals per role, source metadata).
    """
    model, out = Path(model), check_new_output(Path(out_dir), inputs=(Path(model),))
    with open_model(model) as reader:
        taxa = classify_model((i.name, i.canonical) for i in reader)
        totals = totals_by_role([{"role": taxa[i.name].role, "numel": i.numel, "nbytes": i.nbytes} for i in reader])
        ws = Workspace()  # used by write_organ_dir's one annotation thread only

        def annotate(info: Any, raw: np.ndarray) -> dict[str, Any]:
            t = taxa[info.name]
            entry: dict[str, Any] = {"role": t.role, "domain": t.domain, "subtype": t.subtype}
            if measure:
                entry["measure"] = _measure(reader, info, raw, ws)
            return entry

        return write_organ_dir(out, items_of(reader), reader.metadata, reader.arch, _source(model, reader),
                               annotate, extra={"totals": totals})


def assemble(source: str | Path, out: str | Path) -> str:
    """Rebuild a model file from an organ folder (or convert any readable model).

    Args:
        source: organ folder (``extract`` output), or any model.
        out: ``*.gguf`` or ``*.safetensors`` (quantised tensors become F32 in safetensors).

    Returns:
        The kind written (``gguf`` or ``safetensors``).
    """
    source, out = Path(source), Path(out)
    if output_kind(out) == "organs":
        raise BadInput(f"assemble writes a model file: give OUT a .gguf or .safetensors suffix, not {out}")
    check_new_output(out, inputs=(source,))
    with open_model(source) as reader:
        return write_model(out, items_of(reader), reader.metadata, reader.arch)


@dataclass(frozen=True)
class GraftResult:
    """What a graft did: output path, ``direct`` (byte overwrite in a GGUF copy) or ``rewrite``
    mode, and the (recipient name, donor name) pairs replaced."""

    out: Path
    mode: str
    replaced: list[tuple[str, str]]
    bytes_replaced: int


def _pairs(rec: ModelReader, don: ModelReader, organs: str) -> list[tuple[Any, Any]]:
    taxa = classify_model((i.name, i.canonical) for i in rec)
    chosen = [i for i in rec if matches(organs, i.name, i.canonical, taxa[i.name])]
    if not chosen:
        raise BadInput(f"--organs {organs!r} matches no tensor of {rec.path}")
    by_canon = {i.canonical: i for i in don}
    pairs, problems = [], []
    for info in chosen:
        donor = by_canon.get(info.canonical)
        if donor is None:
            problems.append(f"{info.canonical} is missing from the donor")
        elif donor.shape != info.shape:
            problems.append(f"{info.canonical} shape {list(info.shape)} (recipient) vs {list(donor.shape)} (donor)")
        elif donor.dtype != info.dtype:
            problems.append(f"{info.canonical} dtype {info.dtype} (recipient) vs {donor.dtype} (donor)")
        else:
            pairs.append((info, donor))
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise BadInput(f"cannot graft {len(problems)} of {len(chosen)} selected tensors: "
                       + "; ".join(problems[:3]) + more)
    return pairs


def graft(recipient: str | Path, donor: str | Path, organs: str, out: str | Path,
          direct: bool | None = None) -> GraftResult:
    """Replace the recipient's tensors selected by `organs` with the donor's, into a new model.

    Tensors are matched by canonical name, so a Hugging Face donor can feed a GGUF recipient.
    Every selected tensor must exist in the donor with the same shape and dtype; otherwise
    nothing is written.

    Args:
        recipient: model to copy (never changed in place).
        donor: model or organ folder to take organs from.
        organs: selection: roles/domains or globs, comma-separated (``organ``, ``blk.*.ffn_*``).
        out: ``*.gguf``, ``*.safetensors`` or a folder (organ folder).
        direct: byte-matched overwrite in a copy of a GGUF recipient (metadata untouched). None
            picks it whenever the recipient is GGUF and `out` is ``.gguf``.

    Returns:
        `GraftResult`.
    """
    recipient, donor, out = Path(recipient), Path(donor), Path(out)
    check_new_output(out, inputs=(recipient, donor))
    with open_model(recipient) as rec, open_model(donor) as don:
        pairs = _pairs(rec, don, organs)
        can_direct = rec.format == "gguf" and output_kind(out) == "gguf"
        if direct and not can_direct:
            raise BadInput("--direct needs a GGUF recipient and a .gguf output")
        moved = sum(d.nbytes for _, d in pairs)
        replaced = [(r.name, d.name) for r, d in pairs]
        if can_direct and direct is not False:
            _direct(rec, don, pairs, out)
            return GraftResult(out, "direct", replaced, moved)
        swap = {r.name: d.name for r, d in pairs}
        items = [(info, (lambda n=swap[info.name]: don.raw(n)) if info.name in swap else (lambda n=info.name: rec.raw(n)))
                 for info in rec]
        meta = dict(rec.metadata)
        meta["cogitans.graft.donor"] = MetaEntry(str(donor), "STRING")
        meta["cogitans.graft.organs"] = MetaEntry(organs, "STRING")
        meta["cogitans.graft.tensors"] = MetaEntry(len(pairs), "UINT32")
        write_model(out, items, meta, rec.arch, {"path": str(recipient), "graft_from": str(donor)})
        return GraftResult(out, "rewrite", replaced, moved)


def _direct(rec: Any, don: ModelReader, pairs: list[tuple[Any, Any]], out: Path) -> None:
    """Copy the recipient GGUF, then overwrite each selected tensor's bytes in place in the copy."""
    with atomic_file(out) as tmp:
        shutil.copyfile(rec.path, tmp)
        with tmp.open("r+b") as fh:
            for info, donor in pairs:
                raw = np.ascontiguousarray(don.raw(donor.name)).reshape(-1).view(np.uint8)
                if raw.nbytes != info.nbytes:
                    raise BadInput(f"{info.canonical}: donor has {raw.nbytes} bytes, recipient {info.nbytes}")
                fh.seek(rec.data_offset(info.name))
                fh.write(memoryview(raw))
