"""extract / assemble / graft on tiny models; atomic outputs; purify and quantize a whole model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from genome.errors import BadInput
from genome.formats import content_hash, open_model
from genome.organs import assemble, extract, graft
from genome.quantize import ternary_decode, ternary_encode
from genome.transforms import load_quantized, purify_model, quantize_model
from tests.genome.conftest import tiny_bert_tensors, write_tiny_bert


def _tensors(path: Path) -> dict[str, bytes]:
    with open_model(path) as m:
        return {i.name: bytes(m.raw(i.name)) for i in m}


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


def test_extract_writes_bins_and_a_full_manifest(tiny_bert: Path, tmp_path: Path) -> None:
    out = tmp_path / "organs"
    manifest = extract(tiny_bert, out)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["tensors"] == manifest["tensors"] and on_disk["arch"] == "bert"
    sd = tiny_bert_tensors()
    assert {e["name"] for e in on_disk["tensors"]} == set(sd)
    for e in on_disk["tensors"]:
        data = (out / e["file"]).read_bytes()
        assert data == sd[e["name"]].tobytes() and len(data) == e["nbytes"]
        assert e["blake3"] == content_hash(np.frombuffer(data, np.uint8))
        assert e["shape"] == list(sd[e["name"]].shape) and e["dtype"] in ("F32", "I64")
        assert {"role", "domain", "subtype", "canonical"} <= set(e) and "tier" in e["measure"]
    up = next(e for e in on_disk["tensors"] if e["name"] == "encoder.layer.1.intermediate.dense.weight")
    assert (up["canonical"], up["role"], up["subtype"], up["file"]) == ("blk.1.ffn_up.weight", "organ", "up",
                                                                      "blk.1.ffn_up.weight.bin")
    assert on_disk["source"]["format"] == "hf"
    assert any(m["key"] == "safetensors.format" and m["value"] == "pt" for m in on_disk["metadata"])
    assert on_disk["totals"]["organ"]["tensors"] == 8


def test_assemble_round_trip_gguf_and_safetensors(tiny_bert: Path, tmp_path: Path) -> None:
    extract(tiny_bert, tmp_path / "organs")
    assert assemble(tmp_path / "organs", tmp_path / "m.gguf") == "gguf"
    assert assemble(tmp_path / "m.gguf", tmp_path / "m.safetensors") == "safetensors"
    assert _tensors(tmp_path / "m.safetensors") == _tensors(tiny_bert)
    with safe_open(str(tmp_path / "m.safetensors"), "np") as f:
        assert f.metadata()["format"] == "pt"


def test_outputs_are_never_overwritten_and_failures_leave_nothing(tiny_bert: Path, tmp_path: Path) -> None:
    out = tmp_path / "organs"
    extract(tiny_bert, out)
    with pytest.raises(BadInput, match="not empty"):
        extract(tiny_bert, out)
    with pytest.raises(BadInput, match="also an input"):
        assemble(tiny_bert / "model.safetensors", tiny_bert / "model.safetensors")
    # damage one organ (same size): assembling fails part-way and leaves no file behind
    victim = out / "blk.1.ffn_down.weight.bin"
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="content hash"):
        assemble(out, tmp_path / "broken.gguf")
    assert not (tmp_path / "broken.gguf").exists() and not _leftovers(tmp_path)


def test_extract_failing_part_way_leaves_nothing(tiny_bert: Path, tmp_path: Path, monkeypatch) -> None:
    # annotations run on a worker thread: an error there still removes the half-written folder
    calls = []

    def failing(raw, info, workspace=None):
        calls.append(info.name)
        if len(calls) == 3:
            raise RuntimeError("measurement failed")
        return real(raw, info, workspace=workspace)

    from genome import organs

    real = organs.measure_tensor
    monkeypatch.setattr(organs, "measure_tensor", failing)
    with pytest.raises(RuntimeError, match="measurement failed"):
        extract(tiny_bert, tmp_path / "organs")
    assert not (tmp_path / "organs").exists() and not _leftovers(tmp_path)


def test_extract_annotation_waits_for_the_writer_within_its_lead(tiny_bert: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    # with no lead allowed, tensor i is annotated only once the writer has reached it (all earlier
    # tensors started); the manifest is the same as with the default lead
    from genome import organs
    from genome.formats import organ_dir

    started, order = [], []
    real_write, real_measure = organ_dir._write_hashed, organs.measure_tensor

    def write(path, raw):
        started.append(path.name)
        return real_write(path, raw)

    def measure(raw, info, workspace=None):
        order.append(len(started))
        return real_measure(raw, info, workspace=workspace)

    expected = extract(tiny_bert, tmp_path / "a")
    monkeypatch.setattr(organ_dir, "_LEAD_BYTES", 0)
    monkeypatch.setattr(organ_dir, "_write_hashed", write)
    monkeypatch.setattr(organs, "measure_tensor", measure)
    assert extract(tiny_bert, tmp_path / "b")["tensors"] == expected["tensors"]
    assert all(seen >= i for i, seen in enumerate(order)) and len(order) == len(expected["tensors"])


def test_graft_ffn_between_same_shaped_models(tmp_path: Path) -> None:
    rec, don = write_tiny_bert(tmp_path / "rec", seed=0), write_tiny_bert(tmp_path / "don", seed=1)
    result = graft(rec, don, "blk.*.ffn_*", tmp_path / "chimera.safetensors")
    assert result.mode == "rewrite" and len(result.replaced) == 8
    got, r, d = _tensors(tmp_path / "chimera.safetensors"), _tensors(rec), _tensors(don)
    for name in got:
        expected = d if (".intermediate." in name or ".output.dense." in name) and "attention" not in name else r
        assert got[name] == expected[name], name
    with safe_open(str(tmp_path / "chimera.safetensors"), "np") as f:
        assert f.metadata()["cogitans.graft.organs"] == "blk.*.ffn_*"
    # a donor organ folder works the same way
    extract(don, tmp_path / "don_organs")
    graft(rec, tmp_path / "don_organs", "organ", tmp_path / "chimera2.safetensors")
    assert _tensors(tmp_path / "chimera2.safetensors") == got


def test_graft_mismatched_shapes_writes_nothing(tmp_path: Path) -> None:
    rec, don = write_tiny_bert(tmp_path / "rec"), write_tiny_bert(tmp_path / "don", inter=12)
    with pytest.raises(BadInput, match=r"shape \[16, 8\] \(recipient\) vs \[12, 8\] \(donor\)"):
        graft(rec, don, "organ", tmp_path / "out.safetensors")
    with pytest.raises(BadInput, match="matches no tensor"):
        graft(rec, don, "blk.*.nothing", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists() and not _leftovers(tmp_path)


def test_direct_gguf_to_gguf_graft(tmp_path: Path) -> None:
    rec, don = write_tiny_bert(tmp_path / "rec", seed=0), write_tiny_bert(tmp_path / "don", seed=1)
    assemble(rec, tmp_path / "rec.gguf")
    assemble(don, tmp_path / "don.gguf")
    before = (tmp_path / "rec.gguf").read_bytes()
    direct = graft(tmp_path / "rec.gguf", tmp_path / "don.gguf", "organ", tmp_path / "direct.gguf")
    assert direct.mode == "direct"
    assert (tmp_path / "rec.gguf").read_bytes() == before  # recipient untouched
    rewrite = graft(tmp_path / "rec.gguf", don, "organ", tmp_path / "rewrite.gguf", direct=False)
    assert rewrite.mode == "rewrite"
    a, b = _tensors(tmp_path / "direct.gguf"), _tensors(tmp_path / "rewrite.gguf")
    assert a == b
    assert a["encoder.layer.0.intermediate.dense.weight"] == _tensors(don)["encoder.layer.0.intermediate.dense.weight"]
    assert a["encoder.layer.0.attention.self.query.weight"] == _tensors(rec)["encoder.layer.0.attention.self.query.weight"]
    with pytest.raises(BadInput, match="--direct needs"):
        graft(rec, don, "organ", tmp_path / "x.gguf", direct=True)


def test_purify_model_and_strength_zero(tiny_bert: Path, tmp_path: Path) -> None:
    reports = purify_model(tiny_bert, tmp_path / "p0.safetensors", strength=0.0)
    assert len(reports) == 24 and all(r.output_shift == 0 for _, r in reports)  # 2 layers x 12 weights/biases
    assert _tensors(tmp_path / "p0.safetensors") == _tensors(tiny_bert)
    reports = purify_model(tiny_bert, tmp_path / "p1.gguf", strength=1.0, organs="organ")
    assert len(reports) == 8 and all(r.weight_change > 0 for _, r in reports if r.before.n_sampled > 8)
    with pytest.raises(BadInput, match="strength"):
        purify_model(tiny_bert, tmp_path / "bad.gguf", strength=2.0)


def test_quantize_model_round_trips(tiny_bert: Path, tmp_path: Path) -> None:
    rows = quantize_model(tiny_bert, tmp_path / "t.safetensors", method="twn", organs="organ")
    assert len(rows) == 8 and all(r["ratio"] > 1 for r in rows)
    back = load_quantized(tmp_path / "t.safetensors")
    sd = tiny_bert_tensors()
    assert set(back) == set(sd)
    w = torch.from_numpy(sd["encoder.layer.0.intermediate.dense.weight"])
    assert torch.equal(back["encoder.layer.0.intermediate.dense.weight"], ternary_decode(ternary_encode(w, "twn")))
    assert torch.equal(back["encoder.layer.0.attention.self.query.weight"],
                       torch.from_numpy(sd["encoder.layer.0.attention.self.query.weight"]))  # not selected
    tuned = write_tiny_bert(tmp_path / "tuned", seed=0)
    rows = quantize_model(tuned, tmp_path / "bd.safetensors", method="bitdelta", base=tiny_bert, per_row=True)
    assert all(r["weight_rel_error"] == 0 for r in rows)  # identical weights: zero delta
    with pytest.raises(BadInput, match="--base"):
        quantize_model(tiny_bert, tmp_path / "x.safetensors", method="bitdelta")
