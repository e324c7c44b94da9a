"""Every merge method by its mergekit name, with the parameters it accepts: one explicit dict.

A `Method` declares what a config may say about it (which models it needs, which parameters,
their defaults and allowed ranges) and names the module that implements it. Declaring methods
here, without importing torch, lets a config be checked completely before anything heavy loads.

Each implementing module defines the one shared interface::

    prepare(task: MergeTask) -> stats       # passes over task.chunks() for per-tensor statistics
    apply(task: MergeTask, chunk: Chunk, stats) -> torch.Tensor   # (G, L) merged values

`genome.recombine.task` explains tasks, chunks and groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Param:
    """One parameter: default (None = required), allowed numeric range, or a boolean flag."""

    default: Any = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    flag: bool = False

    @property
    def required(self) -> bool:
        return self.default is None and not self.flag

    def describe(self) -> str:
        """The allowed range as text: ``(0, 1]``."""
        if self.flag:
            return "true or false"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"

    def accepts(self, value: Any) -> bool:
        """True if `value` is allowed."""
        if self.flag:
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        v = float(value)
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))


@dataclass(frozen=True)
class Method:
    """A merge method.

    Attributes:
        name: mergekit's name (``ties``, ``slerp`` ...).
        module: the implementing module (defines `prepare` and `apply`).
        needs_base: the method works on deltas against `base_model`.
        min_models: fewest non-base models per tensor.
        max_models: most non-base models per tensor (None: any).
        model_params: per-model parameters (``weight``, ``density`` ...).
        global_params: parameters of the whole merge (``normalize``, ``t`` ...).
        variant: fixed choices of a method family (sign consensus, rescaling).
    """

    name: str
    module: str
    needs_base: bool
    min_models: int = 1
    max_models: int | None = None
    model_params: Mapping[str, Param] = field(default_factory=dict)
    global_params: Mapping[str, Param] = field(default_factory=dict)
    variant: Mapping[str, Any] = field(default_factory=dict)

    def impl(self) -> ModuleType:
        """The implementing module (imports torch)."""
        return import_module(self.module)

    @property
    def params(self) -> dict[str, Param]:
        """Every parameter name the method accepts, per-model and global."""
        return {**self.model_params, **self.global_params}


_P = "genome.recombine."
_WEIGHT = Param(lo=None, hi=None)  # required; any finite value (negative weights subtract a task)
_DENSITY = Param(1.0, 0.0, 1.0, lo_open=True)
_FLAG_TRUE, _FLAG_FALSE = Param(True, flag=True), Param(False, flag=True)
_INT8 = {"int8_mask": _FLAG_FALSE}  # a mergekit memory option; masks here are bool already
_LAMBDA = {"lambda": Param(1.0)}


def _gta(name: str, module: str, *, consensus: bool, normalize: bool, rescale: bool,
         extra: Mapping[str, Param] | None = None) -> Method:
    """A generalised task-arithmetic method: base + combine(sparsify(model - base))."""
    return Method(name, _P + module, needs_base=True,
                  model_params={"weight": _WEIGHT, "density": _DENSITY, **(extra or {})},
                  global_params={"normalize": Param(normalize, flag=True), "rescale": Param(rescale, flag=True),
                                 **_LAMBDA, **_INT8},
                  variant={"consensus": consensus})


REGISTRY: dict[str, Method] = {
    "linear": Method("linear", _P + "linear", needs_base=False, model_params={"weight": _WEIGHT},
                     global_params={"normalize": _FLAG_TRUE, **_INT8}),
    "slerp": Method("slerp", _P + "slerp", needs_base=True, min_models=1, max_models=1,
                    global_params={"t": Param(lo=0.0, hi=1.0)}),
    "task_arithmetic": _gta("task_arithmetic", "task_arithmetic", consensus=False, normalize=False, rescale=False),
    "ties": _gta("ties", "ties", consensus=True, normalize=True, rescale=False),
    "dare_ties": _gta("dare_ties", "dare", consensus=True, normalize=False, rescale=True),
    "dare_linear": _gta("dare_linear", "dare", consensus=False, normalize=False, rescale=True),
    "breadcrumbs": _gta("breadcrumbs", "breadcrumbs", consensus=False, normalize=False, rescale=False,
                        extra={"gamma": Param(0.01, 0.0, 1.0, hi_open=True)}),
    "breadcrumbs_ties": _gta("breadcrumbs_ties", "breadcrumbs", consensus=True, normalize=False, rescale=False,
                             extra={"gamma": Param(0.01, 0.0, 1.0, hi_open=True)}),
    "model_stock": Method("model_stock", _P + "model_stock", needs_base=True, min_models=2,
                          global_params={"filter_wise": _FLAG_FALSE}),
    "passthrough": Method("passthrough", _P + "passthrough", needs_base=False, min_models=1, max_models=1,
                          model_params={"scale": Param(1.0)}),
}


def get_method(name: str) -> Method:
    """The registered method `name`; `BadInput` naming the choices otherwise."""
    from genome.errors import BadInput

    try:
        return REGISTRY[name]
    except KeyError:
        raise BadInput(f"merge_method: unknown method {name!r}; expected one of {', '.join(REGISTRY)}") from None
