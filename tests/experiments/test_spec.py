from __future__ import annotations

import pytest

from experiments.spec import apply_overrides, dump_spec, load_spec, validate
from genome.errors import BadInput


def write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    spec = load_spec(write(tmp_path, "mutation:\n  sigma: 0.02\n"), ["replication.threshold=7", "consensus.rule=median"])
    assert spec.mutation.sigma == 0.02 and spec.replication.threshold == 7 and spec.consensus.rule == "median"
    assert spec.selection.pressure == 0.1 and spec.fitness.tau == 1000  # the source's defaults
    assert validate(apply_overrides({}, [])).model_dump() == validate({}).model_dump()
    assert "sigma: 0.02" in dump_spec(spec)


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("mutation:\n  sigmaa: 0.1\n", [], "unknown key 'mutation.sigmaa'"),
        ("bogus: 1\n", [], "unknown key 'bogus'"),
        ("mutation:\n  sigma: high\n", [], "mutation.sigma = 'high'"),
        ("mutation:\n  sigma: -0.5\n", [], "mutation.sigma = -0.5: Input should be greater than or equal to 0"),
        ("replication:\n  threshold: 0\n", [], "replication.threshold = 0"),
        ("", ["colony.initial_agents=500"], "exceeds colony.capacity"),
        ("", ["memory.bands=3"], "256 bits"),
        ("", ["mutation"], "key=value"),
        ("mutation: [1, 2\n", [], "YAML syntax error"),
        ("- a\n- b\n", [], "must be a mapping"),
    ],
)
def test_bad_specs_name_the_problem(tmp_path, text, overrides, message):
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_spec(write(tmp_path, text), overrides)


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="config file not found"):
        load_spec(tmp_path / "nope.yaml")
