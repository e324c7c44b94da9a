"""safetensors, PyTorch checkpoints, Hugging Face folders and canonical names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from genome.errors import BadInput
from genome.formats import canonical_names, items_of, open_model, write_gguf, write_safetensors
from tests.genome.conftest import tiny_bert_tensors


def test_safetensors_lazy_read_all_dtypes(tmp_path: Path) -> None:
    sd = {"a.bf16": torch.tensor([[1.5, -2.25], [3.0, 0.125]], dtype=torch.bfloat16),
          "b.i64": torch.arange(5, dtype=torch.int64), "c.f16": torch.tensor([0.5, -1.0], dtype=torch.float16),
          "d.bool": torch.tensor([True, False])}
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path), metadata={"format": "pt", "note": "x"})
    with open_model(path) as model:
        assert model.format == "safetensors"
        assert {i.name: i.dtype for i in model} == {"a.bf16": "BF16", "b.i64": "I64", "c.f16": "F16", "d.bool": "BOOL"}
        np.testing.assert_array_equal(model.array("a.bf16"), sd["a.bf16"].float().numpy())
        np.testing.assert_array_equal(model.array("b.i64"), np.arange(5))
        assert bytes(model.raw("a.bf16")) == sd["a.bf16"].view(torch.uint8).numpy().tobytes()
        assert model.metadata["safetensors.note"].value == "x"
        out = tmp_path / "copy.safetensors"
        write_safetensors(out, items_of(model), model.metadata)
    with safe_open(str(out), "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "x"}
        for k, v in sd.items():
            assert torch.equal(f.get_tensor(k), v) and f.get_tensor(k).dtype == v.dtype


def test_safetensors_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes((10**9).to_bytes(8, "little") + b"{}")  # header length past the end
    with pytest.raises(BadInput, match="past the end"):
        open_model(path)
    path.write_bytes(b"abc")
    with pytest.raises(BadInput, match="truncated safetensors header"):
        open_model(path)


def test_torch_checkpoint_plain_and_nested(tmp_path: Path) -> None:
    sd = {k: torch.from_numpy(v) for k, v in tiny_bert_tensors().items()}
    path = tmp_path / "model.pt"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    with open_model(path) as model:
        assert model.format == "torch"
        assert sorted(model.names()) == sorted(sd)
        for name, t in sd.items():
            np.testing.assert_array_equal(model.array(name), t.numpy())
        assert model.info("encoder.layer.1.output.dense.weight").canonical == "blk.1.ffn_down.weight"


class _Evil:
    def __reduce__(self):
        return os.system, (f"touch {_Evil.marker}",)


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    _Evil.marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "payload": _Evil()}, path)
    with pytest.raises(BadInput, match="refused"):
        open_model(path)
    assert not (tmp_path / "pwned").exists()


def test_hf_folder_with_sharded_index(tmp_path: Path) -> None:
    sd = {k: torch.from_numpy(v) for k, v in tiny_bert_tensors().items()}
    names = sorted(sd)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for file, keys in shards.items():
        save_file({k: sd[k] for k in keys}, str(tmp_path / file))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: f for f, ks in shards.items() for k in ks}}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 2}))
    with open_model(tmp_path) as model:
        assert model.format == "hf" and model.arch == "bert"
        assert sorted(model.names()) == names
        np.testing.assert_array_equal(model.array(names[-1]), sd[names[-1]].numpy())
        assert model.metadata["bert.block_count"].value == 2
        assert model.metadata["bert.embedding_length"].value == 8


def test_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BadInput, match="no weights"):
        open_model(tmp_path)
    with pytest.raises(BadInput, match="no such file"):
        open_model(tmp_path / "missing.gguf")


def test_canonical_names_hf_and_gguf_agree() -> None:
    hf = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.0.intermediate.dense.bias",
          "embeddings.word_embeddings.weight", "pooler.dense.weight"]
    assert canonical_names(hf, "bert") == {
        hf[0]: "blk.0.attn_q.weight", hf[1]: "blk.0.ffn_up.bias", hf[2]: "token_embd.weight",
        hf[3]: "pooler.dense.weight"}
    llama = ["model.layers.3.mlp.gate_proj.weight", "model.embed_tokens.weight", "lm_head.weight"]
    got = canonical_names(llama, None)  # architecture unknown: fallbacks find llama names
    assert list(got.values()) == ["blk.3.ffn_gate.weight", "token_embd.weight", "output.weight"]
    clash = canonical_names(llama + ["blk.3.ffn_gate.weight"], "llama")
    assert clash["blk.3.ffn_gate.weight"] == "blk.3.ffn_gate.weight"  # already canonical: keeps its name
    assert clash[llama[0]] == llama[0]  # would clash: keeps its own name, so the map stays one-to-one


def test_hf_to_gguf_uses_canonical_names_and_restores_originals(tiny_bert: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.gguf"
    with open_model(tiny_bert) as model:
        write_gguf(out, items_of(model), model.metadata, model.arch)
        originals = {i.name: bytes(model.raw(i.name)) for i in model}
    import gguf

    stored = [t.name for t in gguf.GGUFReader(out).tensors]
    assert "blk.1.ffn_down.weight" in stored and "token_embd.weight" in stored
    with open_model(out) as back:
        assert {i.name: bytes(back.raw(i.name)) for i in back} == originals
        assert "cogitans.source_names" not in back.metadata


def test_import_genome_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, genome; heavy = [m for m in ('torch', 'numpy', 'gguf', 'ray', 'mesa') if m in sys.modules]; "
            "assert not heavy, heavy; assert callable(genome.open_model); assert 'BadInput' in genome.__all__")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
