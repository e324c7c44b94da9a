"""Merge configs end to end on tiny BERT-shaped models: mergekit YAML unchanged, gradients and
filters, every input and output format, frankenmerges, vocabulary union, and the CLI's bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from genome.errors import BadInput
from genome.formats import open_model
from genome.recombine.merge import merge_tensors
from genome.recombine.runner import merge
from tests.genome.conftest import write_tiny_bert

ROOT = Path(__file__).resolve().parents[2]
UP0 = "encoder.layer.0.intermediate.dense.weight"
Q1 = "encoder.layer.1.attention.self.query.weight"


def variant(base: Path, out: Path, seed: int, scale: float = 0.05, **resize: int) -> Path:
    """A copy of a tiny BERT folder with Gaussian deltas on every float tensor."""
    rng = np.random.default_rng(seed)
    sd = load_file(str(base / "model.safetensors"))
    out.mkdir(parents=True)
    new = {k: (v + scale * rng.standard_normal(v.shape)).astype(np.float32) if v.dtype == np.float32 else v
           for k, v in sd.items()}
    for key, rows in resize.items():  # grow a tensor's rows (a larger vocabulary)
        name = {"vocab": "embeddings.word_embeddings.weight"}[key]
        new[name] = np.concatenate([new[name], rng.standard_normal((rows - len(new[name]), new[name].shape[1]))
                                    .astype(np.float32)])
    save_file(new, str(out / "model.safetensors"))
    shutil.copy(base / "config.json", out / "config.json")
    return out


@pytest.fixture
def family(tmp_path: Path) -> dict[str, Path]:
    base = write_tiny_bert(tmp_path / "base")
    return {"base": base, "a": variant(base, tmp_path / "a", 1), "b": variant(base, tmp_path / "b", 2)}


def sd(path: Path) -> dict[str, np.ndarray]:
    with open_model(path) as r:
        return {i.name: np.array(r.array(i.name)) for i in r.tensors()}


def write(tmp: Path, text: str) -> Path:
    (tmp / "merge.yaml").write_text(text)
    return tmp / "merge.yaml"


def test_mergekit_ties_yaml_with_gradients_and_filters(family: dict[str, Path], tmp_path: Path) -> None:
    cfg = write(tmp_path, f"""
models:
  - model: {family['a']}
    parameters:
      density: [0.9, 0.3]      # a gradient over the two layers
      weight: 1.0
  - model: {family['b']}
    parameters:
      density: 0.5
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
  - model: {family['base']}
merge_method: ties
base_model: {family['base']}
parameters:
  normalize: true
  int8_mask: true
dtype: float32
""")
    report = merge(cfg, tmp_path / "out.safetensors")
    assert report.tensors == 38 and report.merged == 37 and report.layers == 2  # position_ids copied
    out, base, a, b = (sd(p) for p in (tmp_path / "out.safetensors", family["base"], family["a"], family["b"]))
    t = lambda x: torch.from_numpy(x)
    # layer 0 FFN: A at density 0.9 (t = 0), B matched by the mlp filter: weight 0.5
    want = merge_tensors("ties", [t(a[UP0]), t(b[UP0])], t(base[UP0]),
                         [{"weight": 1.0, "density": 0.9}, {"weight": 0.5, "density": 0.5}])
    np.testing.assert_allclose(out[UP0], want.numpy(), rtol=0, atol=0)
    # layer 1 attention: A at density 0.3 (t = 1), B's weight 0 by the fallback entry
    want = merge_tensors("ties", [t(a[Q1]), t(b[Q1])], t(base[Q1]),
                         [{"weight": 1.0, "density": 0.3}, {"weight": 0.0, "density": 0.5}])
    np.testing.assert_allclose(out[Q1], want.numpy(), rtol=0, atol=0)
    assert np.array_equal(out["embeddings.position_ids"], base["embeddings.position_ids"])


def test_linear_merge_to_every_output_format(family: dict[str, Path], tmp_path: Path) -> None:
    pt = tmp_path / "pt"  # B as a PyTorch checkpoint (with its config.json beside it)
    pt.mkdir()
    torch.save({k: torch.from_numpy(v) for k, v in sd(family["b"]).items()}, pt / "pytorch_model.bin")
    shutil.copy(family["b"] / "config.json", pt / "config.json")
    cfg = write(tmp_path, f"""
models:
  - model: {family['a']}
    parameters: {{weight: 1.0}}
  - model: {pt / 'pytorch_model.bin'}
    parameters: {{weight: 3.0}}
merge_method: linear
dtype: bfloat16
""")
    a, b = sd(family["a"]), sd(family["b"])
    for out in (tmp_path / "m.safetensors", tmp_path / "m.gguf", tmp_path / "folder"):
        report = merge(cfg, out, shard_bytes=600, dtype="float32" if out.suffix == ".gguf" else None)
        got = sd(out)
        assert set(got) == set(a)
        tol = 1e-6 if out.suffix == ".gguf" else 4e-3  # bf16 output rounds to 8 bits of mantissa
        np.testing.assert_allclose(got[UP0], (a[UP0] + 3 * b[UP0]) / 4, atol=tol, rtol=tol)
    assert len(report.shards) > 3 and (tmp_path / "folder" / "model.safetensors.index.json").is_file()
    assert json.loads((tmp_path / "folder" / "config.json").read_text())["model_type"] == "bert"
    with open_model(tmp_path / "m.safetensors") as r:
        assert r.info(UP0).dtype == "BF16"
    with open_model(tmp_path / "m.gguf") as r:
        assert r.info(UP0).canonical == "blk.0.ffn_up.weight" and r.info(UP0).dtype == "F32"


def test_passthrough_slices_make_a_deeper_model(family: dict[str, Path], tmp_path: Path) -> None:
    cfg = write(tmp_path, f"""
slices:
  - sources:
    - model: {family['a']}
      layer_range: [0, 2]
  - sources:
    - model: {family['b']}
      layer_range: [1, 2]
merge_method: passthrough
dtype: float32
""")
    report = merge(cfg, tmp_path / "deep")
    assert report.layers == 3
    deep, a, b = sd(tmp_path / "deep"), sd(family["a"]), sd(family["b"])
    assert np.array_equal(deep["encoder.layer.2.output.dense.weight"], b["encoder.layer.1.output.dense.weight"])
    assert np.array_equal(deep["encoder.layer.1.output.dense.weight"], a["encoder.layer.1.output.dense.weight"])
    assert np.array_equal(deep["embeddings.word_embeddings.weight"], a["embeddings.word_embeddings.weight"])
    assert json.loads((tmp_path / "deep" / "config.json").read_text())["num_hidden_layers"] == 3


def test_slerp_gradient_over_layers(family: dict[str, Path], tmp_path: Path) -> None:
    cfg = write(tmp_path, f"""
slices:
  - sources:
      - model: {family['a']}
        layer_range: [0, 2]
      - model: {family['b']}
        layer_range: [0, 2]
merge_method: slerp
base_model: {family['a']}
parameters:
  t:
    - filter: self_attn
      value: [0, 1]
    - value: 0.5
dtype: float32
""")
    merge(cfg, tmp_path / "s.safetensors")
    out, a, b = sd(tmp_path / "s.safetensors"), sd(family["a"]), sd(family["b"])
    q0 = "encoder.layer.0.attention.self.query.weight"
    np.testing.assert_allclose(out[q0], a[q0], atol=1e-6)  # attention, layer 0: t = 0
    np.testing.assert_allclose(out[Q1], b[Q1], atol=1e-6)  # attention, last layer: t = 1
    t = lambda x: torch.from_numpy(x)
    np.testing.assert_allclose(out[UP0], merge_tensors("slerp", [t(b[UP0])], t(a[UP0]), options={"t": 0.5}).numpy(),
                               atol=1e-6)


def _tiny_gguf(path: Path, sd32: dict[str, np.ndarray]) -> Path:
    """The same tensors as a GGUF file (GGUF names), FFN up weights quantised to Q8_0."""
    from gguf import quants

    from genome.formats import canonical_names

    writer = gguf.GGUFWriter(path, "bert")
    for name, canon in canonical_names(list(sd32), "bert").items():
        v = sd32[name]
        if canon.endswith("ffn_up.weight"):
            q = quants.quantize(v, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(canon, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(canon, v)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_quantised_gguf_merges_with_safetensors_by_canonical_name(tmp_path: Path) -> None:
    base = write_tiny_bert(tmp_path / "base", hidden=32, inter=64)
    other = variant(base, tmp_path / "other", 3)
    q = _tiny_gguf(tmp_path / "q.gguf", load_file(str(base / "model.safetensors")))
    cfg = write(tmp_path, f"""
models:
  - model: {q}
    parameters: {{weight: 0.5}}
  - model: {other}
    parameters: {{weight: 0.5}}
merge_method: linear
""")
    merge(cfg, tmp_path / "out.safetensors")
    out, o = sd(tmp_path / "out.safetensors"), sd(other)
    with open_model(q) as r:
        assert r.info("blk.0.ffn_up.weight").dtype == "Q8_0"
        deq = np.array(r.array("blk.0.ffn_up.weight"))
    base_up = load_file(str(base / "model.safetensors"))[UP0]
    assert 0 < np.abs(deq - base_up).max() < 0.01  # Q8_0 really was lossy, and dequantised
    names = {i.canonical: i.name for i in open_model(tmp_path / "out.safetensors").tensors()}
    np.testing.assert_allclose(out[names["blk.0.ffn_up.weight"]], (deq + o[UP0]) / 2, atol=1e-6)


def test_vocabulary_union_policy(family: dict[str, Path], tmp_path: Path) -> None:
    big = variant(family["base"], tmp_path / "big", 4, vocab=24)
    text = f"""
models:
  - model: {family['a']}
    parameters: {{weight: 1.0}}
  - model: {big}
    parameters: {{weight: 1.0}}
merge_method: linear
"""
    with pytest.raises(BadInput, match=r"embeddings.word_embeddings.weight.*\[20, 8\].*\[24, 8\].*embed_policy: union"):
        merge(write(tmp_path, text), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    merge(write(tmp_path, text + "embed_policy: union\n"), tmp_path / "u.safetensors")
    out, a, g = sd(tmp_path / "u.safetensors"), sd(family["a"]), sd(big)
    emb = "embeddings.word_embeddings.weight"
    assert out[emb].shape == (24, 8)
    np.testing.assert_allclose(out[emb][:20], (a[emb] + g[emb][:20]) / 2, atol=1e-6)
    np.testing.assert_allclose(out[emb][22], (a[emb].mean(0) + g[emb][22]) / 2, atol=1e-6)  # new row: A's mean


def cogitans(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "experiments.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_bad_inputs_exit_2_with_one_line_and_no_output(family: dict[str, Path], tmp_path: Path) -> None:
    small = write_tiny_bert(tmp_path / "small", hidden=4)
    a, b, base = family["a"], family["b"], family["base"]
    cases = {
        "unknown method": (f"models: [{{model: {a}}}, {{model: {b}}}]\nmerge_method: frankenstein\n", "frankenstein"),
        "missing base": (f"models: [{{model: {a}, parameters: {{weight: 1}}}}]\nmerge_method: ties\n", "base_model"),
        "weights sum to 0": ((f"models: [{{model: {a}, parameters: {{weight: 1}}}}, {{model: {b}, parameters: "
                              f"{{weight: -1}}}}]\nmerge_method: linear\n"), "sum to 0"),
        "density": ((f"models: [{{model: {a}, parameters: {{weight: 1, density: 1.5}}}}]\nmerge_method: ties\n"
                     f"base_model: {base}\n"), "density = 1.5"),
        "shape": ((f"models: [{{model: {a}, parameters: {{weight: 1}}}}, {{model: {small}, parameters: "
                   f"{{weight: 1}}}}]\nmerge_method: linear\n"), "shape"),
        "missing model": ((f"models: [{{model: {a}, parameters: {{weight: 1}}}}, {{model: {tmp_path / 'nope'}, "
                           f"parameters: {{weight: 1}}}}]\nmerge_method: linear\n"), "models[1].model: no such file"),
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = {}
    for case, (text, _) in cases.items():  # all at once: each is a fresh interpreter
        cfg = tmp_path / f"{case.replace(' ', '_')}.yaml"
        cfg.write_text(text)
        out = tmp_path / f"out_{case.replace(' ', '_')}.safetensors"
        running[case] = (out, subprocess.Popen([sys.executable, "-m", "experiments.cli", "genome", "merge", cfg, out],
                                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True))
    for case, (out, popen) in running.items():
        _, stderr = popen.communicate(timeout=300)
        proc = subprocess.CompletedProcess(popen.args, popen.returncode, "", stderr)
        needle = cases[case][1]
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (case, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (case, lines)
        assert "Traceback" not in proc.stderr and not out.exists()
        assert not any(p.name.startswith(f".{out.name}") for p in tmp_path.iterdir())  # no temporary left
    good = tmp_path / "good.yaml"
    good.write_text(f"models: [{{model: {a}, parameters: {{weight: 1}}}}, {{model: {b}, parameters: {{weight: 1}}}}]\n"
                    f"merge_method: linear\n")
    proc = cogitans("genome", "merge", good, tmp_path / "good.safetensors", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["merged"] == 37 and report["kind"] == "safetensors" and (tmp_path / "good.safetensors").is_file()
