"""A real merge: two fine-tunes of MiniLM-L6 on different toy tasks, merged by the streaming runner
with linear, TIES and SLERP. The children's sentence embeddings sit between the parents', and each
child keeps both parents' tasks better than the base model does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from genome.recombine.runner import merge
from tests.genome.bert_forward import bert_embed
from tests.genome.minilm_tasks import NEUTRAL, WordPiece, finetune, margin, sentences

CONFIGS = {
    "linear": "models:\n  - model: {a}\n    parameters: {{weight: 0.5}}\n  - model: {b}\n    parameters: {{weight: 0.5}}\n"
              "merge_method: linear\ndtype: float32\n",
    "ties": "models:\n  - model: {a}\n    parameters: {{weight: 1.0, density: 0.5}}\n  - model: {b}\n"
            "    parameters: {{weight: 1.0, density: 0.5}}\nmerge_method: ties\nbase_model: {base}\ndtype: float32\n",
    "slerp": "slices:\n  - sources:\n      - model: {a}\n        layer_range: [0, 6]\n      - model: {b}\n"
             "        layer_range: [0, 6]\nmerge_method: slerp\nbase_model: {a}\nparameters:\n  t: 0.5\ndtype: float32\n",
}


@pytest.fixture(scope="module")
def family(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("minilm_family")
    base = load_file(str(minilm_dir / "model.safetensors"))
    tok = WordPiece(minilm_dir / "vocab.txt")
    paths = {"base": minilm_dir}
    models = {"base": base}
    for name, task in (("a", "sentiment"), ("b", "topic")):
        models[name] = finetune(base, tok, task)
        paths[name] = root / name
        paths[name].mkdir()
        save_file({k: v.contiguous() for k, v in models[name].items()}, str(paths[name] / "model.safetensors"))
        shutil.copy(minilm_dir / "config.json", paths[name] / "config.json")
    return {"root": root, "paths": paths, "models": models, "tok": tok}


def _embed(sd: dict[str, torch.Tensor], tok: WordPiece, texts: list[str]) -> torch.Tensor:
    ids, mask = tok(texts)
    with torch.no_grad():
        return bert_embed(sd, ids, mask)


@pytest.mark.parametrize("method", ["linear", "ties", "slerp"])
def test_merged_minilm_sits_between_the_parents_and_keeps_both_tasks(family: dict, method: str) -> None:
    paths, models, tok = family["paths"], family["models"], family["tok"]
    cfg = family["root"] / f"{method}.yaml"
    cfg.write_text(CONFIGS[method].format(a=paths["a"], b=paths["b"], base=paths["base"]))
    out = family["root"] / f"{method}.safetensors"
    report = merge(cfg, out)
    assert report.merged == 103 and report.tensors == 104
    child = load_file(str(out))
    changed = {k for k in child if not torch.equal(child[k], models["base"][k])}
    assert changed and all(k.startswith("encoder.layer.5.") for k in changed)  # only the fine-tuned tensors moved

    held = {task: sentences(task, held_out=True) for task in ("sentiment", "topic")}
    probe = NEUTRAL + held["sentiment"][0] + held["topic"][0]
    e = {name: _embed(sd, tok, probe) for name, sd in (*models.items(), ("child", child))}
    dist = lambda x, y: 1 - (x * y).sum(-1)  # cosine distance per sentence
    parents = dist(e["a"], e["b"])
    # between the parents: closer to each parent than the parents are to each other, sentence by sentence
    assert bool((dist(e["child"], e["a"]) < parents).all()) and bool((dist(e["child"], e["b"]) < parents).all())
    for task, parent in (("sentiment", "a"), ("topic", "b")):
        texts, labels = held[task]
        scores = {name: margin(_embed(sd, tok, texts), labels, task)
                  for name, sd in (("base", models["base"]), (parent, models[parent]), ("child", child))}
        assert scores[parent] > scores["base"] + 0.2  # the fine-tune taught the task (held-out sentences)
        assert scores["child"] > scores["base"] + 0.05, (task, scores)  # the child keeps it
