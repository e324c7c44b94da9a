"""From a validated config and the models' headers to one job per output tensor.

Everything that can be wrong is found here, before a single tensor value is read: a tensor
missing from a model, shapes or vocabularies that differ (the error names the tensor, both
shapes and both models), a parameter a tensor cannot resolve, weights that sum to zero.

Tensors are matched across models by canonical name (`blk.3.ffn_up.weight` for any
architecture or file format). Layer tensors get t = layer / (layers - 1) within their slice for
gradients; tensors before the layers (embeddings) t = 0, after them (final norm, head) t = 1,
as in mergekit. Slices renumber the layers they take (frankenmerges).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from genome.errors import BadInput
from genome.formats.base import PLAIN_DTYPES, ModelReader, TensorInfo
from genome.recombine.config import InputSlice, MergeConfig, evaluate
from genome.taxonomy import classify

_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")
_KEEP_DTYPES = ("F64", "F32", "F16", "BF16")


@dataclass(frozen=True)
class Ref:
    """One tensor of one model: config name of the model, tensor name in it."""

    model: str
    tensor: str


@dataclass(frozen=True)
class Job:
    """How to make one output tensor.

    Attributes:
        info: the output tensor (name, shape, dtype, byte size, canonical name).
        sources: the non-base models' tensors, in config order.
        base: the base model's tensor, or None.
        params: resolved per-model parameters, one dict per source.
        options: resolved global parameters.
        copy: for tensors that are not floats (token ids, masks): copied unchanged from here.
        rows: vocabulary union: every source grown to this many rows (None: no padding).
    """

    info: TensorInfo
    sources: tuple[Ref, ...] = ()
    base: Ref | None = None
    params: tuple[dict[str, Any], ...] = ()
    options: dict[str, Any] | None = None
    copy: Ref | None = None
    rows: int | None = None


@dataclass(frozen=True)
class Plan:
    jobs: list[Job]
    reference: str  # model whose names, metadata and config the output keeps
    layers: int  # layers in the output


class _Index:
    """A model's tensors by canonical name."""

    def __init__(self, reader: ModelReader) -> None:
        self.by_canon = {i.canonical or i.name: i for i in reader.tensors()}
        blocks = [int(m.group(1)) for c in self.by_canon if (m := _BLOCK.match(c))]
        self.layers = max(blocks) + 1 if blocks else 0
        self.order = list(self.by_canon)


def _slices(cfg: MergeConfig, index: dict[str, _Index]) -> list[tuple[list[InputSlice], str | None, dict]]:
    """The config as (sources, base, slice parameters) per output slice; the models form is one slice."""
    if cfg.models is not None:
        sources = [InputSlice(model=m.model, layer_range=(0, index[m.model].layers), parameters=m.parameters)
                   for m in cfg.models]
        return [(sources, cfg.base_model, {})]
    return [(sl.sources, sl.base_model or cfg.base_model, sl.parameters or {}) for sl in cfg.slices]


def _renumber(name: str, old: int, new: int) -> str:
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part == str(old):
            parts[i] = str(new)
            return ".".join(parts)
    return name


def build(cfg: MergeConfig, readers: dict[str, ModelReader], dtype: str | None) -> Plan:
    """Plan every output tensor (reads headers only)."""
    index = {name: _Index(r) for name, r in readers.items()}
    slices = _slices(cfg, index)
    method = cfg.method
    jobs: list[Job] = []

    def participants(sources: list[InputSlice], base: str | None) -> tuple[list[InputSlice], InputSlice | None]:
        if not method.needs_base:
            return list(sources), None
        others = [s for s in sources if s.model != base]
        own = next((s for s in sources if s.model == base), None)
        return others, own or InputSlice(model=base, layer_range=sources[0].layer_range)

    def add(canon_ref: str, ref_model: str, srcs: list[tuple[InputSlice, str]], base: tuple[str, str] | None,
            slice_params: dict, t: float, out_name: str, out_canon: str, where: str) -> None:
        ref_info = index[ref_model].by_canon[canon_ref]
        if not ref_info.is_float:
            jobs.append(Job(info=replace(ref_info, name=out_name, canonical=out_canon), copy=Ref(ref_model, ref_info.name)))
            return
        taxon = classify(ref_info.name, canon_ref)
        refs, shapes = [], {}
        for s, canon in srcs + ([(InputSlice(model=base[0], layer_range=(0, 0)), base[1])] if base else []):
            info = index[s.model].by_canon.get(canon)
            if info is None:
                raise BadInput(f"{s.model}: has no tensor {canon!r} (needed for {out_name!r}, {where})")
            refs.append(Ref(s.model, info.name))
            shapes[s.model] = info.shape
        rows = _check_shapes(out_name, ref_model, ref_info.shape, shapes, cfg.union, taxon.subtype)
        names = (ref_info.name, canon_ref, taxon.domain)
        params = tuple(_model_params(cfg, s, slice_params, names, t, out_name) for s, _ in srcs)
        options = _global_params(cfg, slice_params, names, t, out_name)
        _check_weights(method, params, options, out_name)
        shape = (rows, *ref_info.shape[1:]) if rows else ref_info.shape
        out_dtype = dtype or (ref_info.dtype if ref_info.dtype in _KEEP_DTYPES else "F32")
        jobs.append(Job(tensor_info(out_name, shape, out_dtype, out_canon), tuple(refs[: len(srcs)]),
                        refs[-1] if base else None, params, options, rows=rows))

    first_sources, first_base, _ = slices[0]
    ref_model = first_base or first_sources[0].model
    ref = index[ref_model]
    non_block = [c for c in ref.order if not _BLOCK.match(c)]
    pre = [c for c in non_block if _is_pre(ref.by_canon[c])]
    post = [c for c in non_block if c not in pre]

    def edge(canons: list[str], sl: tuple, t: float) -> None:
        sources, base, sp = sl
        others, own = participants(sources, base)
        for c in canons:
            info = ref.by_canon[c]
            add(c, ref_model, [(s, c) for s in others], (own.model, c) if own else None, sp, t, info.name, c,
                "embeddings" if t == 0 else "final tensors")

    edge(pre, slices[0], 0.0)
    out_layer = 0
    for k, (sources, base, sp) in enumerate(slices):
        others, own = participants(sources, base)
        lead = own or others[0]
        n = lead.layer_range[1] - lead.layer_range[0]
        for idx in range(n):
            t = idx / (n - 1) if n > 1 else 1.0
            lead_layer = lead.layer_range[0] + idx
            if lead_layer >= index[lead.model].layers:
                raise BadInput(f"slices[{k}]: layer {lead_layer} is past the end of {lead.model} "
                               f"({index[lead.model].layers} layers)")
            for c in index[lead.model].order:
                m = _BLOCK.match(c)
                if not m or int(m.group(1)) != lead_layer:
                    continue
                rest = m.group(2)
                srcs = [(s, f"blk.{s.layer_range[0] + idx}.{rest}") for s in others]
                base_ref = (own.model, f"blk.{own.layer_range[0] + idx}.{rest}") if own else None
                name = _renumber(index[lead.model].by_canon[c].name, lead_layer, out_layer)
                add(c, lead.model, srcs, base_ref, sp, t, name, f"blk.{out_layer}.{rest}", f"layer {out_layer}")
            out_layer += 1
    edge(post, slices[-1], 1.0)
    names = [j.info.name for j in jobs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BadInput(f"the merge would write tensor {dup!r} twice; check the slices' layer ranges")
    return Plan(jobs, ref_model, out_layer)


def check(cfg: MergeConfig, paths: dict[str, Path], dtype: str | None) -> Plan:
    """Open every model, plan the merge and close them again (no torch, no tensor values)."""
    from contextlib import ExitStack

    from genome.formats import open_model

    with ExitStack() as stack:
        readers = {name: stack.enter_context(open_model(p)) for name, p in paths.items()}
        return build(cfg, readers, dtype)


def tensor_info(name: str, shape: tuple[int, ...], dtype: str, canonical: str = "") -> TensorInfo:
    """A `TensorInfo` for an output tensor of a plain dtype."""
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return TensorInfo(name, tuple(shape), dtype, numel * PLAIN_DTYPES[dtype][1], canonical or name)


def _is_pre(info: TensorInfo) -> bool:
    canon = info.canonical or info.name
    return canon.startswith(("token_embd", "position_embd", "token_types")) or "embed" in info.name


def _check_shapes(name: str, ref_model: str, ref_shape: tuple[int, ...], shapes: dict[str, tuple[int, ...]],
                  union: bool, subtype: str) -> int | None:
    odd = {m: s for m, s in shapes.items() if s != ref_shape}
    if not odd:
        return None
    vocab = subtype in ("vocab", "lm_head")
    if union and vocab and all(len(s) == len(ref_shape) and s[1:] == ref_shape[1:] for s in odd.values()):
        return max(s[0] for s in [ref_shape, *odd.values()])
    model, shape = next(iter(odd.items()))
    hint = " (vocabularies differ: set embed_policy: union to merge into the larger one)" if vocab else ""
    raise BadInput(f"tensor {name!r}: shape {list(ref_shape)} in {ref_model} but {list(shape)} in {model}{hint}")


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _model_params(cfg: MergeConfig, src: InputSlice, slice_params: dict, names: tuple[str, str, str], t: float,
                  tensor: str) -> dict[str, Any]:
    out = {}
    for key, p in cfg.method.model_params.items():
        settings = [(src.parameters or {}).get(key), slice_params.get(key), (cfg.parameters or {}).get(key)]
        value = _first(*(evaluate(s, names, t) if s is not None else None for s in settings), p.default)
        if value is None:
            raise BadInput(f"parameters.{key}: {cfg.merge_method} needs {key} for model {src.model} "
                           f"(tensor {tensor!r}); no value or filter matches it")
        out[key] = value
    return out


def _global_params(cfg: MergeConfig, slice_params: dict, names: tuple[str, str, str], t: float,
                   tensor: str) -> dict[str, Any]:
    out = dict(cfg.method.variant)
    for key, p in cfg.method.global_params.items():
        settings = [slice_params.get(key), (cfg.parameters or {}).get(key)]
        value = _first(*(evaluate(s, names, t) if s is not None else None for s in settings), p.default)
        if value is None:
            raise BadInput(f"parameters.{key}: {cfg.merge_method} needs {key} (tensor {tensor!r}); "
                           f"no value or filter matches it")
        out[key] = value
    return out


def _check_weights(method: Any, params: tuple[dict[str, Any], ...], options: dict[str, Any], tensor: str) -> None:
    if "weight" not in method.model_params or not params:
        return
    weights = [float(p["weight"]) for p in params]
    if all(w == 0 for w in weights):
        raise BadInput(f"weights: every weight is 0 for tensor {tensor!r}; nothing would be merged")
    if options.get("normalize") and abs(sum(weights)) < 1e-12:
        raise BadInput(f"weights: {weights} sum to 0 for tensor {tensor!r}; normalize divides by their sum "
                       f"(set normalize: false or change the weights)")
