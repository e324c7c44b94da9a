"""The README documents every spec key and states the quick start the CI runs."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from experiments.spec import ExperimentSpec

ROOT = Path(__file__).resolve().parents[1]


def spec_keys(model: type[BaseModel] = ExperimentSpec, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += spec_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_config_key_is_documented():
    readme = (ROOT / "README.md").read_text()
    missing = [key for key in spec_keys() if f"`{key}`" not in readme]
    assert not missing, f"README lacks: {missing}"


def test_quick_start_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = 'pip install -e ".[test]" && python -m pytest'
    assert test_command in readme and test_command in ci
    assert "pip install -e . && cogitans run experiments/configs/default.yaml" in readme
