"""Merge configs: mergekit's own examples parse unchanged; every bad key is named; parameter
gradients and filters evaluate as mergekit defines them."""

from __future__ import annotations

import pytest
import yaml

from genome.errors import BadInput
from genome.recombine.config import evaluate, parse

TIES = """
models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      density: [1, 0.7, 0.1] # density gradient
      weight: 1.0
  - model: garage-bAInd/Platypus2-13B
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1] # weight gradient
  - model: WizardLM/WizardMath-13B-V1.0
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: TheBloke/Llama-2-13B-fp16
parameters:
  normalize: true
  int8_mask: true
dtype: float16
"""
SLERP = """
slices:
  - sources:
      - model: psmathur/orca_mini_v3_13b
        layer_range: [0, 40]
      - model: garage-bAInd/Platypus2-13B
        layer_range: [0, 40]
merge_method: slerp
base_model: psmathur/orca_mini_v3_13b
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5 # fallback for rest of tensors
dtype: float16
"""
PASSTHROUGH = """
slices:
  - sources:
    - model: psmathur/orca_mini_v3_13b
      layer_range: [0, 24]
  - sources:
    - model: garage-bAInd/Platypus2-13B
      layer_range: [20, 40]
merge_method: passthrough
dtype: float16
"""
DARE = """
models:
  - model: mistralai/Mistral-7B-v0.1
  - model: samir-fama/SamirGPT-v1
    parameters:
      density: 0.53
      weight: 0.4
  - model: abacusai/Slerp-CM-mist-dpo
    parameters:
      density: 0.53
      weight: 0.3
merge_method: dare_ties
base_model: mistralai/Mistral-7B-v0.1
parameters:
  int8_mask: true
dtype: bfloat16
"""


@pytest.mark.parametrize("text", [TIES, SLERP, PASSTHROUGH, DARE])
def test_mergekit_examples_parse_unchanged(text: str) -> None:
    cfg = parse(yaml.safe_load(text))
    assert cfg.merge_method in ("ties", "slerp", "passthrough", "dare_ties") and cfg.dtype in ("float16", "bfloat16")
    assert len(cfg.model_paths()) in (2, 3, 4)


def test_gradients_and_filters_evaluate_like_mergekit() -> None:
    t = parse(yaml.safe_load(SLERP)).parameters["t"]
    attn = ("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", "attention")
    mlp = ("encoder.layer.0.intermediate.dense.weight", "blk.0.ffn_up.weight", "mlp")  # matched by domain
    other = ("model.norm.weight", "output_norm.weight", "norm")
    # five points over the layers: t = 0, 0.25, ... 1; between them linear interpolation
    assert [evaluate(t, attn, x) for x in (0.0, 0.25, 0.375, 1.0)] == [0.0, 0.5, pytest.approx(0.4), 1.0]
    assert evaluate(t, mlp, 0.125) == pytest.approx(0.75)
    assert evaluate(t, other, 0.9) == 0.5
    w = parse(yaml.safe_load(TIES)).models[2].parameters["weight"]
    assert evaluate(w, mlp, 0.5) == 0.5 and evaluate(w, attn, 0.5) == 0


@pytest.mark.parametrize(("patch", "message"), [
    ({"merge_method": "tie"}, "merge_method: unknown method 'tie'"),
    ({"base_model": None}, "base_model: ties merges deltas against a base model"),
    ({"dtype": "int8"}, "dtype: 'int8' is not a float type"),
    ({"parameters": {"normalise": True}}, "parameters.normalise: not a parameter of ties"),
    ({"models": [{"model": "a", "parameters": {"weight": 1, "density": 0}}]},
     "models[0].parameters.density = 0: ties expects density in (0, 1]"),
    ({"models": [{"model": "a", "parameters": {"weight": 1, "density": [0.5, 1.2]}}]},
     "models[0].parameters.density = 1.2"),
    ({"models": [{"model": "a", "parameters": {"weight": [{"fliter": "mlp", "value": 1}]}}]},
     "models[0].parameters.weight: expected {filter, value} entries"),
    ({"models": [{"modle": "a"}]}, "models[0].model: required key is missing"),
    ({"slices": [{"sources": [{"model": "a", "layer_range": [0, 2]}]}]}, "models / slices: give exactly one"),
    ({"tokenizer": {"source": "base", "tokens": {"<x>": {}}}}, "tokenizer: token-level vocabulary merging"),
    ({"modules": {"text": {}}}, "modules: multi-module merges are not supported"),
    ({"surprise": 1}, "surprise: unknown key"),
])
def test_every_bad_key_is_named(patch: dict, message: str) -> None:
    data = {**yaml.safe_load(TIES), **patch}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(BadInput) as err:
        parse(data)
    assert message in str(err.value)


def test_slerp_takes_exactly_one_model_besides_its_base() -> None:
    data = yaml.safe_load(SLERP)
    data["slices"][0]["sources"].append({"model": "third", "layer_range": [0, 40]})
    with pytest.raises(BadInput, match=r"slices\[0\].sources: slerp needs exactly 1 model besides the base"):
        parse(data)
    data = yaml.safe_load(PASSTHROUGH)
    data["slices"][0]["sources"][0]["layer_range"] = [4, 2]
    with pytest.raises(BadInput, match="layer_range"):
        parse(data)
