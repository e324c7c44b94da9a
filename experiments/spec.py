"""Experiment specs: a frozen pydantic model loaded from YAML, with `--set a.b=value` overrides.

Every problem (missing file, YAML syntax, unknown key, wrong type, value out of range) becomes a
`BadInput` naming the key, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from genome.errors import BadInput
from swarm.params import SwarmSpec, _Section


class RunParams(_Section):
    name: str = Field("swarm", min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="run name; the run directory is <name>-<timestamp>")
    seed: int = Field(0, ge=0, description="seed of the one random generator of the run")
    steps: int = Field(500, ge=1, description="steps to run")
    checkpoint_every: int = Field(100, ge=0, description="steps between checkpoints (0: only at the end)")
    snapshot_every: int = Field(50, ge=0, description="steps between agent-table snapshots (0: never)")
    threads: int = Field(0, ge=0, le=256, description="torch CPU threads (0: torch's default)")


class ExperimentSpec(SwarmSpec):
    """A whole experiment: the simulation sections plus `run`."""

    run: RunParams = RunParams()


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]) or "spec"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        elif e["type"] == "value_error":
            parts.append(e["msg"].removeprefix("Value error, "))
        else:
            parts.append(f"{key} = {e.get('input')!r}: {e['msg']}")
    return "; ".join(parts)


def validate(data: dict[str, Any]) -> ExperimentSpec:
    """A validated spec from a nested dict, or `BadInput` naming every bad key."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as err:
        raise BadInput(f"invalid spec: {_describe(err)}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=value' -> (['a', 'b'], value parsed as YAML)."""
    if "=" not in text:
        raise BadInput(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise BadInput(f"--set has an empty key in '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each 'a.b=value' into a copy of the nested dict `data`."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadInput(f"--set {text}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file, or `BadInput` for a missing file, bad syntax or a non-mapping."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BadInput(f"YAML syntax error in {path}{where}: {getattr(err, 'problem', err)}") from None
    except UnicodeDecodeError:
        raise BadInput(f"config file is not UTF-8 text: {path}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def load_spec(path: Path, overrides: list[str] | None = None) -> ExperimentSpec:
    """Read, override and validate a spec file."""
    return validate(apply_overrides(read_yaml(path), overrides or []))


def dump_spec(spec: ExperimentSpec) -> str:
    """The fully resolved spec as YAML (every key, defaults included)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
