"""Merge configs: the YAML that mergekit users write, validated whole before any tensor is read.

Accepted as mergekit writes it: `models` (each with `model` and `parameters`) or `slices` (each
with `sources` of `model` + `layer_range`), `merge_method`, `base_model`, `dtype`, `out_dtype`,
`parameters`, `tokenizer_source`, `tokenizer`, `chat_template` (tokenizer files are copied from
the reference model, not merged token by token; `tokenizer` is accepted with ``source: union``
only, `modules` and `residual_weight` not at all). A parameter is a number, a
gradient (a list of numbers interpolated over the layers) or a list of ``{filter, value}``
entries, the first whose filter matches the tensor winning (no filter matches everything).

Two optional keys are Cogitans' own: `embed_policy` (``error``, or ``union``: vocabularies of
different sizes merge into the largest, missing rows initialised from each model's mean row;
``tokenizer_source: union`` asks for the same) and `seed` (DARE's random drops).

Errors are `BadInput`s naming the key: ``models[1].parameters.density = 1.5: ties expects density
in (0, 1]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genome.errors import BadInput
from genome.recombine.registry import REGISTRY, Method

DTYPES = {"float32": "F32", "fp32": "F32", "f32": "F32", "float16": "F16", "fp16": "F16", "half": "F16",
          "f16": "F16", "bfloat16": "BF16", "bf16": "BF16"}
#: mergekit filter words -> taxonomy domain (tensor names differ between architectures).
FILTER_ALIASES = {"self_attn": "attention", "attn": "attention", "attention": "attention", "mlp": "mlp",
                  "ffn": "mlp", "feed_forward": "mlp", "layernorm": "norm", "norm": "norm",
                  "embed_tokens": "embedding", "embed": "embedding", "lm_head": "head"}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Conditional(_Frozen):
    """One ``{filter, value}`` entry of a parameter."""

    value: float | bool | str | tuple[float, ...]
    filter: str | None = None


Setting = bool | float | str | tuple[float, ...] | tuple[Conditional, ...]


def _setting(value: Any) -> Any:
    if isinstance(value, (tuple, Conditional)):  # already validated
        return value if isinstance(value, tuple) else (value,)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            if not value:
                raise ValueError("an empty list is not a parameter value")
            return tuple(float(v) for v in value)
        if all(isinstance(v, dict) for v in value):
            try:
                return tuple(Conditional.model_validate(v) for v in value)
            except ValidationError as err:
                e = err.errors()[0]
                raise ValueError(f"expected {{filter, value}} entries; {'.'.join(map(str, e['loc']))}: "
                                 f"{e['msg'].lower()}") from None
        raise ValueError(f"expected a number, a list of numbers or a list of {{filter, value}}, got {value!r}")
    if isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"expected a number, a list of numbers or a list of {{filter, value}}, got {value!r}")


class _WithParams(_Frozen):
    parameters: dict[str, Any] | None = None

    @field_validator("parameters")
    @classmethod
    def _check(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        out = {}
        for key, v in value.items():
            try:
                out[key] = _setting(v)
            except (ValueError, ValidationError) as err:
                raise ValueError(f"{key}: {err}") from None
        return out


class InputModel(_WithParams):
    model: str


class InputSlice(_WithParams):
    model: str
    layer_range: tuple[int, int]


class OutputSlice(_WithParams):
    sources: list[InputSlice] = Field(min_length=1)
    base_model: str | None = None
    residual_weight: float | None = None


class MergeConfig(_WithParams):
    """A whole merge. Exactly one of `models` and `slices`."""

    models: list[InputModel] | None = None
    slices: list[OutputSlice] | None = None
    modules: dict[str, Any] | None = None
    merge_method: str
    base_model: str | None = None
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    tokenizer: dict[str, Any] | None = None
    chat_template: str | None = None
    embed_policy: Literal["error", "union"] = "error"
    seed: int = 0

    @property
    def method(self) -> Method:
        return REGISTRY[self.merge_method]

    @property
    def union(self) -> bool:
        """Vocabularies of different sizes merge into the largest."""
        return (self.embed_policy == "union" or self.tokenizer_source == "union"
                or (self.tokenizer or {}).get("source") == "union")

    def model_paths(self) -> list[str]:
        """Every model named, base first, each once, in order of appearance."""
        names = [self.base_model] if self.base_model else []
        names += [m.model for m in self.models or []]
        names += [s.model for sl in self.slices or [] for s in sl.sources]
        names += [sl.base_model for sl in self.slices or [] if sl.base_model]
        return list(dict.fromkeys(names))


def _describe(err: ValidationError) -> str:
    e = err.errors()[0]
    key = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in e["loc"]).lstrip(".") or "config"
    if e["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if e["type"] == "missing":
        return f"{key}: required key is missing"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error" and key.endswith("parameters"):
        return f"{key}.{msg}"  # the validator names the parameter
    return f"{key} = {e.get('input')!r}: {msg}"


def parse(data: Any, where: str = "config") -> MergeConfig:
    """Validate a loaded YAML document: schema, method, models and parameters (no file access)."""
    if not isinstance(data, dict):
        raise BadInput(f"{where}: expected a mapping with merge_method and models or slices")
    try:
        cfg = MergeConfig.model_validate(data)
    except ValidationError as err:
        raise BadInput(f"{where}: {_describe(err)}") from None
    check(cfg)
    return cfg


def check(cfg: MergeConfig) -> None:
    """Method-level rules: a known method, its base model, model counts, parameter names and ranges."""
    if cfg.modules is not None:
        raise BadInput("modules: multi-module merges are not supported; use models or slices")
    if cfg.tokenizer is not None and cfg.tokenizer.get("source") != "union":
        raise BadInput("tokenizer: token-level vocabulary merging is not supported; tokenizer files are copied "
                       "from the reference model (use tokenizer_source: union or embed_policy: union for "
                       "vocabularies of different sizes)")
    for i, sl in enumerate(cfg.slices or []):
        if sl.residual_weight is not None:
            raise BadInput(f"slices[{i}].residual_weight: not supported")
    if (cfg.models is None) == (cfg.slices is None):
        raise BadInput("models / slices: give exactly one of them")
    if cfg.merge_method not in REGISTRY:
        raise BadInput(f"merge_method: unknown method {cfg.merge_method!r}; expected one of {', '.join(REGISTRY)}")
    method = cfg.method
    for key in ("dtype", "out_dtype"):
        value = getattr(cfg, key)
        if value is not None and value.lower() not in DTYPES:
            raise BadInput(f"{key}: {value!r} is not a float type; expected float32, float16 or bfloat16")
    if method.needs_base and not cfg.base_model and not any(sl.base_model for sl in cfg.slices or []):
        raise BadInput(f"base_model: {method.name} merges deltas against a base model; give base_model")
    groups = [cfg.models] if cfg.models is not None else [sl.sources for sl in cfg.slices]
    for i, sources in enumerate(groups):
        where = "models" if cfg.models is not None else f"slices[{i}].sources"
        n = len([s for s in sources if not (method.needs_base and s.model == cfg.base_model)])
        if n < method.min_models or (method.max_models is not None and n > method.max_models):
            if method.max_models == method.min_models:
                wanted = f"exactly {method.min_models} model{'s' * (method.min_models != 1)}"
            else:
                most = "" if method.max_models is None else f" and at most {method.max_models}"
                wanted = f"at least {method.min_models}{most} models"
            raise BadInput(f"{where}: {method.name} needs {wanted} besides the base, got {n}")
        for j, src in enumerate(sources):
            _check_params(method, src.parameters, method.model_params, f"{where}[{j}].parameters")
        if cfg.slices is not None:
            sl = cfg.slices[i]
            _check_params(method, sl.parameters, method.params, f"slices[{i}].parameters")
            spans = {s.layer_range[1] - s.layer_range[0] for s in sl.sources}
            if len(spans) != 1 or min(spans) <= 0 or any(s.layer_range[0] < 0 for s in sl.sources):
                raise BadInput(f"slices[{i}].sources: layer_range must be [start, end) with end > start >= 0 and "
                               f"the same length for every source, got {[list(s.layer_range) for s in sl.sources]}")
    _check_params(method, cfg.parameters, method.params, "parameters")


def _check_params(method: Method, params: dict[str, Any] | None, allowed: dict, where: str) -> None:
    for key, setting in (params or {}).items():
        if key not in allowed:
            raise BadInput(f"{where}.{key}: not a parameter of {method.name}; expected "
                           f"{', '.join(allowed) or 'none'}")
        for value in _leaves(setting):
            if not allowed[key].accepts(value):
                raise BadInput(f"{where}.{key} = {value!r}: {method.name} expects {key} in {allowed[key].describe()}")


def _leaves(setting: Any) -> list[Any]:
    if isinstance(setting, tuple):
        return [v for s in setting for v in _leaves(s.value if isinstance(s, Conditional) else s)]
    return [setting]


def evaluate(setting: Any, names: tuple[str, str, str], t: float) -> Any:
    """A parameter's value for one tensor.

    Args:
        setting: a validated setting.
        names: (original name, canonical name, taxonomy domain) of the tensor.
        t: position of the tensor's layer in its slice, 0 (first) to 1 (last).

    Returns:
        The value, or None if no conditional entry matches.
    """
    if isinstance(setting, tuple) and setting and isinstance(setting[0], Conditional):
        for cond in setting:
            if cond.filter in (None, "*") or _matches(cond.filter, names):
                return evaluate(cond.value, names, t)
        return None
    if isinstance(setting, tuple):
        if len(setting) == 1:
            return setting[0]
        pos = t * (len(setting) - 1)
        i = min(int(pos), len(setting) - 2)
        return (1 - (pos - i)) * setting[i] + (pos - i) * setting[i + 1]
    return setting


def _matches(pattern: str, names: tuple[str, str, str]) -> bool:
    name, canonical, domain = names
    return pattern in name or pattern in canonical or FILTER_ALIASES.get(pattern) == domain


def resolve_path(model: str, root: Path, key: str) -> Path:
    """A model path as written (relative to the working folder, then to the config's folder)."""
    for candidate in (Path(model), root / model):
        if candidate.exists():
            return candidate
    raise BadInput(f"{key}: no such file or folder: {model}")


def load(path: Path) -> tuple[MergeConfig, dict[str, Path]]:
    """Read, validate and locate every model of a config file.

    Returns:
        The config and model name (as written) -> existing path.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such config file: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise BadInput(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    cfg = parse(data, str(path))
    root = path.resolve().parent
    paths = {}
    for name in cfg.model_paths():
        key = "base_model" if name == cfg.base_model else _key_of(cfg, name)
        paths[name] = resolve_path(name, root, key)
    return cfg, paths


def _key_of(cfg: MergeConfig, name: str) -> str:
    for i, m in enumerate(cfg.models or []):
        if m.model == name:
            return f"models[{i}].model"
    for i, sl in enumerate(cfg.slices or []):
        for j, s in enumerate(sl.sources):
            if s.model == name:
                return f"slices[{i}].sources[{j}].model"
    return "slices.base_model"


def out_dtype(cfg: MergeConfig, override: str | None) -> str | None:
    """The output dtype (F32/F16/BF16) asked for, or None (keep each tensor's own float type)."""
    value = override or cfg.out_dtype or cfg.dtype
    if value is None:
        return None
    if value.lower() not in DTYPES:
        raise BadInput(f"--dtype: {value!r} is not a float type; expected float32, float16 or bfloat16")
    return DTYPES[value.lower()]


def dump(data: dict[str, Any]) -> str:
    """YAML text of a config dict (lists of numbers inline), as mergekit writes them."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, default_flow_style=None)


class _PlainDumper(yaml.SafeDumper):
    """A SafeDumper that writes a repeated list out again instead of an anchor (&id001) and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
