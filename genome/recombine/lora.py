"""LoRA-fication: a circuit's weight delta as low-rank A, B, saved as a PEFT adapter, with a router.

`lorafy` factors one delta (out, in) by truncated SVD: the smallest rank whose singular values
keep `energy` of the squared Frobenius norm (or a fixed rank), split evenly,
B = U_r sqrt(S_r) (out, r) and A = sqrt(S_r) V_r^T (r, in), so B @ A is the best rank-r
approximation (Eckart-Young). `lorafy_models` does this for every matrix that differs between a
base and a tuned model and writes a PEFT-compatible adapter folder:

- ``adapter_model.safetensors``: ``base_model.model.<module>.lora_A.weight`` (r, in) and
  ``.lora_B.weight`` (out, r) per module, ``<module>`` the base's tensor name without ``.weight``;
  with changed biases, ``base_model.model.<module>.bias`` (PEFT's ``bias: lora_only``);
- ``adapter_config.json``: ``peft_type: LORA``, ``r`` (largest rank), per-module ``rank_pattern``
  and ``alpha_pattern`` with alpha = r, so PEFT's scaling alpha / r is 1;
- ``router.json``: the `AdapterRouter`, which PEFT ignores.

`AdapterRouter` switches the adapter on for inputs close to the circuit's domain: cosine
similarity of an input embedding to the domain centroid, against a threshold set halfway between
in-domain and out-of-domain calibration similarities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genome.errors import BadInput
from genome.formats import open_model
from genome.formats.atomic import atomic_dir, check_new_output
from genome.taxonomy import matches

PREFIX = "base_model.model."


@dataclass(frozen=True)
class LowRank:
    """A delta as B @ A. a: (r, in); b: (out, r); energy: share of ||delta||_F^2 kept."""

    a: torch.Tensor
    b: torch.Tensor
    energy: float

    @property
    def rank(self) -> int:
        return self.a.shape[0]

    def delta(self) -> torch.Tensor:
        return self.b @ self.a


def lorafy(delta: torch.Tensor, energy: float = 0.99, rank: int | None = None, max_rank: int | None = None) -> LowRank:
    """Low-rank factors of a 2-D delta.

    Args:
        delta: (out, in).
        energy: keep the smallest rank whose singular values hold this share of the energy.
        rank: a fixed rank instead (wins over `energy`).
        max_rank: upper limit on the chosen rank.

    Returns:
        `LowRank` (float32).
    """
    if delta.dim() != 2:
        raise BadInput(f"LoRA-fication needs a matrix, got shape {tuple(delta.shape)}")
    if not 0.0 < energy <= 1.0:
        raise BadInput(f"energy must be in (0, 1], got {energy}")
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    power = s.square()
    total = float(power.sum())
    if rank is None:
        kept = power.cumsum(0) / max(total, 1e-300)
        rank = int((kept < energy - 1e-12).sum()) + 1 if total > 0 else 1
    rank = max(1, min(rank, len(s), max_rank or len(s)))
    root = s[:rank].sqrt()
    b = (u[:, :rank] * root).float()  # (out, r)
    a = (root.unsqueeze(1) * vh[:rank]).float()  # (r, in)
    return LowRank(a, b, float(power[:rank].sum() / total) if total > 0 else 1.0)


def lorafy_models(base: Path, tuned: Path, out: Path, *, organs: str | None = None, energy: float = 0.99,
                  max_rank: int | None = 64, min_change: float = 1e-6, router: AdapterRouter | None = None) -> dict:
    """Write a PEFT adapter holding tuned - base for every changed matrix (selected by `organs`),
    and ``router.json`` when a router is given.

    Returns:
        Summary: modules, ranks, kept energy, adapter and model sizes in bytes.
    """
    from safetensors.torch import save_file

    out = check_new_output(Path(out), inputs=(Path(base), Path(tuned)))
    tensors: dict[str, torch.Tensor] = {}
    ranks, alphas, energies = {}, {}, {}
    biases = False
    with open_model(base) as rb, open_model(tuned) as rt:
        tuned_by_canon = {i.canonical: i for i in rt.tensors()}
        base_bytes = rb.total_bytes()
        for info in rb.tensors():
            other = tuned_by_canon.get(info.canonical)
            if other is None or not info.is_float or other.shape != info.shape:
                continue
            if organs and not matches(organs, info.name, info.canonical, _taxon(info)):
                continue
            w0 = torch.from_numpy(np.array(rb.array(info.name), dtype=np.float32))
            w1 = torch.from_numpy(np.array(rt.array(other.name), dtype=np.float32))
            delta = w1 - w0
            if float(delta.abs().max()) <= min_change * max(float(w0.abs().max()), 1e-12):
                continue
            module = info.name.rsplit(".", 1)[0]
            if len(info.shape) == 2 and info.name.endswith(".weight"):
                low = lorafy(delta, energy, max_rank=max_rank)
                tensors[f"{PREFIX}{module}.lora_A.weight"] = low.a.contiguous()
                tensors[f"{PREFIX}{module}.lora_B.weight"] = low.b.contiguous()
                ranks[module], alphas[module], energies[module] = low.rank, low.rank, low.energy
            elif len(info.shape) == 1 and info.name.endswith(".bias"):
                tensors[f"{PREFIX}{module}.bias"] = w1.contiguous()
                biases = True
    if not ranks:
        raise BadInput(f"{tuned} does not differ from {base} in any selected matrix; nothing to LoRA-fy")
    biases_kept = {k for k in tensors if k.endswith(".bias") and k[len(PREFIX):-5] in ranks}
    tensors = {k: v for k, v in tensors.items() if not k.endswith(".bias") or k in biases_kept}
    config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": str(base), "revision": None,
        "r": max(ranks.values()), "lora_alpha": max(ranks.values()), "lora_dropout": 0.0,
        "target_modules": sorted(ranks), "rank_pattern": ranks, "alpha_pattern": alphas,
        "bias": "lora_only" if biases and biases_kept else "none", "fan_in_fan_out": False,
        "modules_to_save": None, "init_lora_weights": True, "inference_mode": True, "use_rslora": False,
        "use_dora": False, "layers_to_transform": None, "layers_pattern": None,
    }
    with atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        if router is not None:
            router.save(tmp / "router.json")
    adapter_bytes = sum(t.numel() * 4 for t in tensors.values())
    return {"out": str(out), "modules": len(ranks), "ranks": ranks, "energy": energies,
            "adapter_bytes": adapter_bytes, "model_bytes": base_bytes, "ratio": base_bytes / max(adapter_bytes, 1)}


def _taxon(info: object) -> object:
    from genome.taxonomy import classify

    return classify(info.name, info.canonical)


def load_adapter(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """PEFT adapter folder -> module -> (A (r, in), B (out, r), scaling alpha / r)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
        weights = load_file(str(folder / "adapter_model.safetensors"))
    except (OSError, json.JSONDecodeError) as err:
        raise BadInput(f"{folder}: not a PEFT adapter folder ({err})") from None
    out = {}
    for key, a in weights.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len(PREFIX): -len(".lora_A.weight")]
        b = weights[key.replace("lora_A", "lora_B")]
        r = config.get("rank_pattern", {}).get(module, config["r"])
        alpha = config.get("alpha_pattern", {}).get(module, config["lora_alpha"])
        out[module] = (a, b, alpha / r)
    return out


def apply_adapter(state: dict[str, torch.Tensor], adapter: dict[str, tuple[torch.Tensor, torch.Tensor, float]],
                  scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A new state dict with W + scale * scaling * B @ A for every adapted module."""
    new = dict(state)
    for module, (a, b, scaling) in adapter.items():
        key = module + ".weight"
        new[key] = state[key] + scale * scaling * (b @ a)
    return new


@dataclass(frozen=True)
class AdapterRouter:
    """Turns an adapter on for inputs near its domain. centroid: (d,) unit vector."""

    centroid: torch.Tensor
    threshold: float
    temperature: float = 0.02

    @classmethod
    def fit(cls, domain: torch.Tensor, other: torch.Tensor | None = None, threshold: float | None = None) -> AdapterRouter:
        """Centroid of in-domain embeddings (N, d); threshold halfway between the 10th percentile of
        in-domain and the 90th percentile of out-of-domain similarities (or given)."""
        centroid = torch.nn.functional.normalize(torch.nn.functional.normalize(domain.float(), dim=-1).mean(0), dim=0)
        if threshold is None:
            inside = torch.nn.functional.normalize(domain.float(), dim=-1) @ centroid
            if other is None:
                threshold = float(inside.quantile(0.1)) - 0.05
            else:
                outside = torch.nn.functional.normalize(other.float(), dim=-1) @ centroid
                threshold = (float(inside.quantile(0.1)) + float(outside.quantile(0.9))) / 2
        return cls(centroid, threshold)

    def gate(self, x: torch.Tensor, hard: bool = True) -> torch.Tensor:
        """(N,) gate per input embedding (N, d): 1/0, or a sigmoid ramp with `hard=False`."""
        sim = torch.nn.functional.normalize(x.float(), dim=-1) @ self.centroid
        return (sim >= self.threshold).float() if hard else torch.sigmoid((sim - self.threshold) / self.temperature)

    def routed(self, x_embed: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, low: LowRank) -> torch.Tensor:
        """A routed linear layer: h @ (W + gate * B A)^T. h: (N, in), weight: (out, in) -> (N, out)."""
        g = self.gate(x_embed).unsqueeze(1)  # (N, 1)
        return h @ weight.T + g * ((h @ low.a.T) @ low.b.T)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"centroid": self.centroid.tolist(), "threshold": self.threshold,
                                          "temperature": self.temperature}))

    @classmethod
    def load(cls, path: Path) -> AdapterRouter:
        d = json.loads(Path(path).read_text())
        return cls(torch.tensor(d["centroid"]), float(d["threshold"]), float(d["temperature"]))
