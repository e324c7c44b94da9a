"""Taxonomy: domain, subtype and role from names in GGUF and Hugging Face spellings."""

from __future__ import annotations

import pytest

from genome.taxonomy import Taxon, classify, classify_model, matches

CASES = [
    ("blk.0.attn_q.weight", ("attention", "Q", "skeleton")),
    ("blk.0.attn_k.weight", ("attention", "K", "skeleton")),
    ("blk.0.attn_v.bias", ("attention", "V", "skeleton")),
    ("blk.0.attn_output.weight", ("attention", "O", "skeleton")),
    ("blk.0.attn_qkv.weight", ("attention", "QKV", "skeleton")),
    ("blk.0.ffn_gate.weight", ("mlp", "gate", "organ")),
    ("blk.0.ffn_up.weight", ("mlp", "up", "organ")),
    ("blk.0.ffn_down.weight", ("mlp", "down", "organ")),
    ("blk.0.ffn_down_exps.weight", ("mlp", "down", "organ")),
    ("token_embd.weight", ("embedding", "vocab", "embedding")),
    ("position_embd.weight", ("embedding", "position", "embedding")),
    ("blk.0.attn_output_norm.weight", ("norm", "layer", "norm")),
    ("output.weight", ("head", "lm_head", "head")),
    ("blk.0.attn_q.lora_a", ("adapter", "lora", "adapter")),
    ("model.layers.0.self_attn.q_proj.lora_A.weight", ("adapter", "lora", "adapter")),
    ("model.layers.0.self_attn.o_proj.weight", ("attention", "O", "skeleton")),
    ("model.layers.0.mlp.up_proj.weight", ("mlp", "up", "organ")),
    ("transformer.h.0.attn.c_attn.weight", ("attention", "QKV", "skeleton")),
    ("transformer.h.0.mlp.c_proj.weight", ("mlp", "down", "organ")),
    ("lm_head.weight", ("head", "lm_head", "head")),
    ("model.norm.rmsnorm.weight", ("norm", "rms", "norm")),
    ("embeddings.position_ids", ("other", "buffer", "other")),
    ("something.completely.else", ("other", "other", "other")),
    ("", ("other", "other", "other")),
]


@pytest.mark.parametrize(("name", "expected"), CASES)
def test_classify(name: str, expected: tuple[str, str, str]) -> None:
    assert classify(name) == Taxon(*expected)


def test_canonical_name_wins_and_bias_tells_layer_from_rms() -> None:
    assert classify("encoder.layer.0.output.dense.weight", "blk.0.ffn_down.weight").role == "organ"
    taxa = classify_model([("a.ln.weight", "blk.0.attn_norm.weight"), ("a.ln.bias", "blk.0.attn_norm.bias"),
                           ("b.norm.weight", "blk.0.ffn_norm.weight")])
    assert taxa["a.ln.weight"].subtype == "layer"  # has a bias: LayerNorm
    assert taxa["b.norm.weight"].subtype == "rms"  # no bias: RMSNorm


def test_matches_roles_domains_and_globs() -> None:
    t = classify("blk.2.ffn_up.weight")
    assert matches("organ", "x", "blk.2.ffn_up.weight", t)
    assert matches("mlp", "x", "blk.2.ffn_up.weight", t)
    assert matches("norm, blk.*.ffn_*", "x", "blk.2.ffn_up.weight", t)
    assert matches("*.intermediate.*", "encoder.layer.2.intermediate.dense.weight", "blk.2.ffn_up.weight", t)
    assert not matches("skeleton", "x", "blk.2.ffn_up.weight", t)
