"""LoRA-fication: a known low-rank delta is recovered to numerical precision, the adapter files
follow PEFT's format, and the router turns the adapter on only near its domain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import load_file as load_torch

from genome.errors import BadInput
from genome.recombine.lora import (
    AdapterRouter,
    apply_adapter,
    load_adapter,
    lorafy,
    lorafy_models,
)
from tests.genome.conftest import write_tiny_bert


def test_known_low_rank_delta_is_recovered() -> None:
    g = torch.Generator().manual_seed(0)
    b0, a0 = torch.randn(64, 3, generator=g), torch.randn(3, 48, generator=g)
    delta = b0 @ a0  # rank 3
    low = lorafy(delta, energy=0.999)
    assert low.rank == 3 and low.a.shape == (3, 48) and low.b.shape == (64, 3)
    assert low.energy == pytest.approx(1.0, abs=1e-9)
    torch.testing.assert_close(low.delta(), delta, atol=1e-5, rtol=1e-5)
    # a fixed lower rank is the best rank-2 approximation: the error is the third singular value
    two = lorafy(delta, rank=2)
    s = torch.linalg.svdvals(delta.double())
    assert float((two.delta().double() - delta.double()).norm(2)) == pytest.approx(float(s[2]), rel=1e-4)
    # energy picks the smallest rank that keeps it
    noisy = delta + 1e-3 * torch.randn(64, 48, generator=g)
    assert lorafy(noisy, energy=0.99).rank == 3
    with pytest.raises(BadInput, match="matrix"):
        lorafy(torch.zeros(3))


def test_peft_adapter_files_and_round_trip(tmp_path: Path) -> None:
    base = write_tiny_bert(tmp_path / "base", hidden=16, inter=32)
    sd = load_file(str(base / "model.safetensors"))
    rng = np.random.default_rng(1)
    tuned = dict(sd)
    up = "encoder.layer.1.intermediate.dense.weight"
    q = "encoder.layer.0.attention.self.query.weight"
    tuned[up] = sd[up] + (rng.standard_normal((32, 2)) @ rng.standard_normal((2, 16))).astype(np.float32)
    tuned[q] = sd[q] + (0.1 * rng.standard_normal((16, 1)) @ rng.standard_normal((1, 16))).astype(np.float32)
    tuned["encoder.layer.1.intermediate.dense.bias"] = sd["encoder.layer.1.intermediate.dense.bias"] + 0.5
    (tmp_path / "tuned").mkdir()
    save_file(tuned, str(tmp_path / "tuned" / "model.safetensors"))
    (tmp_path / "tuned" / "config.json").write_text((base / "config.json").read_text())

    router = AdapterRouter.fit(torch.randn(10, 4))
    summary = lorafy_models(base, tmp_path / "tuned", tmp_path / "adapter", energy=0.9999, router=router)
    again = AdapterRouter.load(tmp_path / "adapter" / "router.json")
    torch.testing.assert_close(again.centroid, router.centroid)
    assert again.threshold == pytest.approx(router.threshold)
    assert summary["ranks"] == {"encoder.layer.1.intermediate.dense": 2, "encoder.layer.0.attention.self.query": 1}
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 2 and config["lora_alpha"] == 2
    assert config["target_modules"] == sorted(summary["ranks"]) and config["rank_pattern"] == summary["ranks"]
    assert config["alpha_pattern"] == summary["ranks"] and config["bias"] == "lora_only"
    weights = load_torch(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert weights["base_model.model.encoder.layer.1.intermediate.dense.lora_A.weight"].shape == (2, 16)
    assert weights["base_model.model.encoder.layer.1.intermediate.dense.lora_B.weight"].shape == (32, 2)
    assert "base_model.model.encoder.layer.1.intermediate.dense.bias" in weights
    adapter = load_adapter(tmp_path / "adapter")
    restored = apply_adapter({k: torch.from_numpy(v) for k, v in sd.items()}, adapter)
    for name in (up, q):
        torch.testing.assert_close(restored[name], torch.from_numpy(tuned[name]), atol=1e-5, rtol=1e-5)
    assert summary["adapter_bytes"] < summary["model_bytes"] / 10
    with pytest.raises(BadInput, match="does not differ"):
        lorafy_models(base, base, tmp_path / "none")


def test_router_turns_the_adapter_on_near_its_domain() -> None:
    g = torch.Generator().manual_seed(3)
    centre, elsewhere = torch.randn(32, generator=g), torch.randn(32, generator=g)
    domain = centre + 0.3 * torch.randn(40, 32, generator=g)
    other = elsewhere + 0.3 * torch.randn(40, 32, generator=g)
    router = AdapterRouter.fit(domain[:20], other[:20])
    assert router.gate(domain[20:]).mean() == 1.0 and router.gate(other[20:]).mean() == 0.0
    soft = router.gate(torch.cat([domain[20:], other[20:]]), hard=False)
    assert float(soft[:20].min()) > 0.9 and float(soft[20:].max()) < 0.1
    w = torch.randn(8, 6, generator=g)
    low = lorafy(torch.randn(8, 1, generator=g) @ torch.randn(1, 6, generator=g), rank=1)
    h = torch.randn(4, 6, generator=g)
    x = torch.cat([domain[20:22], other[20:22]])  # two in the domain, two outside
    out = router.routed(x, h, w, low)
    torch.testing.assert_close(out[:2], h[:2] @ (w + low.delta()).T)
    torch.testing.assert_close(out[2:], h[2:] @ w.T)
