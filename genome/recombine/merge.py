"""Run one merge task: statistics pass, then chunk by chunk into an output buffer.

`merge_tensors` is the in-memory entry point (tests, the swarm's crossover); the streaming runner
(`genome.recombine.runner`) builds `MergeTask`s over lazy readers and calls `run_task`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from genome.errors import BadInput
from genome.recombine.registry import REGISTRY, Method, get_method
from genome.recombine.task import CHUNK_ELEMS, MergeTask, TensorSource


def resolve_params(method: Method, params: Sequence[Mapping[str, Any]] | None, m: int,
                   options: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-model and global parameters with the method's defaults filled in and checked.

    Raises:
        BadInput: an unknown parameter, a missing required one, or a value out of range.
    """
    per_model = []
    given = list(params or [{}] * m)
    if len(given) != m:
        raise BadInput(f"{method.name}: {m} models but {len(given)} parameter sets")
    for i, p in enumerate(given):
        per_model.append(_fill(method, method.model_params, p, f"models[{i}].parameters"))
    opts = _fill(method, method.global_params, options or {}, "parameters")
    opts.update(method.variant)
    return per_model, opts


def _fill(method: Method, spec: Mapping[str, Any], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise BadInput(f"{where}.{unknown[0]}: not a parameter of {method.name}; expected "
                       f"{', '.join(spec) or 'none'}")
    out = {}
    for key, p in spec.items():
        value = given.get(key, p.default)
        if value is None:
            raise BadInput(f"{where}.{key}: required by {method.name}")
        if not p.accepts(value):
            raise BadInput(f"{where}.{key} = {value!r}: {method.name} expects {p.describe()}")
        out[key] = value
    return out


def run_task(method: Method, task: MergeTask,
             write: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor | None:
    """Merge one tensor.

    Args:
        method: the registered method.
        task: sources, parameters, chunking.
        write: called with (start, stop, (G, L) merged values) for each chunk; if None, the
            chunks are collected and the (G, N) result returned.

    Returns:
        float32 (G, N) when `write` is None, else None.
    """
    impl = method.impl()
    if method.needs_base and task.base is None:
        raise BadInput(f"{method.name} needs a base model (tensor {task.name!r})")
    m = len(task.sources)
    if m < method.min_models or (method.max_models is not None and m > method.max_models):
        most = "any number of" if method.max_models is None else f"at most {method.max_models}"
        raise BadInput(f"{method.name}: tensor {task.name!r} has {m} models; needs at least "
                       f"{method.min_models} and {most} (besides the base)")
    stats = impl.prepare(task)
    out = None if write is not None else torch.empty(task.groups, task.numel)
    for chunk in task.chunks():
        merged = impl.apply(task, chunk, stats)
        if write is not None:
            write(chunk.start, chunk.stop, merged)
        else:
            out[:, chunk.start:chunk.stop] = merged
    return out


def merge_tensors(method: str, tensors: Sequence[torch.Tensor], base: torch.Tensor | None = None,
                  params: Sequence[Mapping[str, Any]] | None = None, options: Mapping[str, Any] | None = None,
                  *, grouped: bool = False, seed: int = 0, chunk_elems: int | None = None,
                  name: str = "tensor") -> torch.Tensor:
    """Merge in-memory tensors with a registered method.

    Args:
        method: a `REGISTRY` name.
        tensors: the non-base models' tensors, all of one shape.
        base: the base model's tensor (methods that need one), same shape.
        params: per model, e.g. ``{"weight": 0.5, "density": 0.3}``; defaults filled in.
        options: global parameters, e.g. ``{"t": 0.5}`` or ``{"normalize": False}``.
        grouped: dim 0 indexes independent merges (one per row): statistics are per row.
        seed: seed of random methods.
        chunk_elems: stream in chunks of this many values per group (None: one chunk).

    Returns:
        float32 tensor of the inputs' shape.
    """
    if method not in REGISTRY:
        get_method(method)  # raises, naming the choices
    spec = REGISTRY[method]
    shape = tensors[0].shape
    for i, t in enumerate(list(tensors) + ([base] if base is not None else [])):
        if t.shape != shape:
            raise BadInput(f"{name}: shape {tuple(t.shape)} of input {i} differs from {tuple(shape)}")
    per_model, opts = resolve_params(spec, params, len(tensors), options)
    task = MergeTask(name, [TensorSource(t, grouped) for t in tensors],
                     TensorSource(base, grouped) if base is not None else None, per_model, opts, seed,
                     chunk_elems if chunk_elems is not None else None)
    out = run_task(spec, task)
    return out.reshape(shape)


__all__ = ["CHUNK_ELEMS", "merge_tensors", "resolve_params", "run_task"]
