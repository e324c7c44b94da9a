"""The streaming merge: config -> validated plan -> one tensor at a time -> safetensors or GGUF.

Nothing is read before the whole config and plan are valid. Each output tensor is merged chunk by
chunk from the lazy readers into one output buffer and handed to the writer, which streams it to
a temporary file; the output appears (renamed) only when every tensor is written. Peak memory is
the largest output tensor plus a few chunks.

Outputs, by the name given:

- ``OUT.safetensors``: one file; metadata keeps the reference model's (with its config.json).
- ``OUT.gguf``: one GGUF file (canonical names; the reference's GGUF metadata when it is GGUF).
- ``OUT`` (a folder): a Hugging Face folder written shard by shard (``model-00001-of-0000N
  .safetensors`` + index when more than one), with the reference's config.json (layer count and
  vocabulary size updated) and tokenizer files.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genome.errors import BadInput
from genome.formats import MetaEntry, ModelReader, TensorInfo, open_model
from genome.formats.atomic import atomic_dir, check_new_output
from genome.recombine import config as configs
from genome.recombine.merge import run_task
from genome.recombine.plan import Job, Plan, build
from genome.recombine.task import CHUNK_ELEMS, MergeTask, PaddedSource, ReaderSource

SHARD_BYTES = 5 * 10**9  # mergekit's default shard size
_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
_SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
               "tokenizer.model", "merges.txt", "vocab.json", "added_tokens.json")
Progress = Callable[[int, int, str], None]


@dataclass
class MergeReport:
    """What a merge wrote."""

    out: str
    kind: str
    method: str
    tensors: int
    merged: int
    bytes: int
    layers: int
    seconds: float
    shards: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def merge(config_path: Path, out: Path, *, dtype: str | None = None, shard_bytes: int = SHARD_BYTES,
          chunk_elems: int = CHUNK_ELEMS, progress: Progress | None = None, threads: int | None = 1) -> MergeReport:
    """Run a mergekit-style config.

    Args:
        config_path: the YAML file.
        out: ``*.safetensors``, ``*.gguf``, or a folder to create.
        dtype: output float type (float32/float16/bfloat16), over the config's dtype.
        shard_bytes: largest shard of a folder output.
        chunk_elems: values read at once from each model for a large tensor.
        progress: called with (done, total, tensor name) after each tensor.
        threads: torch threads during the merge (None: leave torch's setting). One by default:
            the work is memory-bound chunks of 256k values, and on 2 shared cores two threads
            made the MiniLM TIES merge 5-10x slower (28-42 s against 3-6 s), waiting on each other.

    Raises:
        BadInput: any problem with the config, the models or the output path; nothing is written.
    """
    t0 = time.perf_counter()
    cfg, paths = configs.load(config_path)
    out_dtype = configs.out_dtype(cfg, dtype)
    out = check_new_output(Path(out), inputs=tuple(paths.values()))
    kind = "gguf" if out.suffix.lower() == ".gguf" else "safetensors" if out.suffix.lower() == ".safetensors" \
        else "folder" if out.suffix == "" else None
    if kind is None:
        raise BadInput(f"output {out}: expected OUT.safetensors, OUT.gguf or a folder name without suffix")
    with ExitStack() as stack:
        if threads is not None:
            stack.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(threads)
        readers = {name: stack.enter_context(open_model(p)) for name, p in paths.items()}
        plan = build(cfg, readers, out_dtype)
        total, done = len(plan.jobs), [0]

        def item(job: Job) -> tuple[TensorInfo, Callable[[], np.ndarray]]:
            def read() -> np.ndarray:
                data = _run_job(job, cfg, readers, chunk_elems)
                done[0] += 1
                if progress is not None:
                    progress(done[0], total, job.info.name)
                return data
            return job.info, read

        items = [item(j) for j in plan.jobs]
        ref = readers[plan.reference]
        meta = _metadata(ref, plan, cfg)
        shards: list[str] = []
        if kind == "gguf":
            from genome.formats import write_gguf

            write_gguf(out, items, meta, ref.arch)
        elif kind == "safetensors":
            from genome.formats import write_safetensors

            write_safetensors(out, items, meta)
        else:
            shards = _write_folder(out, items, meta, ref, plan, shard_bytes)
    merged = sum(1 for j in plan.jobs if j.copy is None)
    return MergeReport(str(out), kind, cfg.merge_method, len(plan.jobs), merged,
                       sum(j.info.nbytes for j in plan.jobs), plan.layers, time.perf_counter() - t0, shards)


def _run_job(job: Job, cfg: configs.MergeConfig, readers: dict[str, ModelReader], chunk_elems: int) -> np.ndarray:
    """The output tensor's bytes: uint8 (nbytes,)."""
    if job.copy is not None:
        return np.array(readers[job.copy.model].raw(job.copy.tensor), copy=True)

    def source(ref: Any) -> ReaderSource | PaddedSource:
        src = ReaderSource(readers[ref.model], ref.tensor)
        if job.rows and src.info.shape[0] != job.rows:
            return PaddedSource(src, job.rows, src.row)
        return src

    task = MergeTask(job.info.name, [source(r) for r in job.sources],
                     source(job.base) if job.base is not None else None,
                     [dict(p) for p in job.params], dict(job.options or {}), cfg.seed, chunk_elems)
    target = _TORCH[job.info.dtype]
    buf = np.empty(job.info.nbytes, dtype=np.uint8)
    size = torch.empty(0, dtype=target).element_size()

    def write(start: int, stop: int, values: torch.Tensor) -> None:
        raw = values.reshape(-1).to(target).view(torch.uint8).numpy()
        buf[start * size: stop * size] = raw

    run_task(cfg.method, task, write)
    return buf


def _metadata(ref: ModelReader, plan: Plan, cfg: configs.MergeConfig) -> dict[str, MetaEntry]:
    meta = dict(ref.metadata)
    arch = ref.arch
    if arch and f"{arch}.block_count" in meta:
        meta[f"{arch}.block_count"] = MetaEntry(plan.layers, "UINT32")
    hf = meta.get("cogitans.hf_config")
    if hf is not None:
        meta["cogitans.hf_config"] = MetaEntry(json.dumps(_hf_config(json.loads(hf.value), plan), sort_keys=True),
                                               "STRING")
    recipe = cfg.model_dump(mode="json", exclude_defaults=True)
    meta["cogitans.merge"] = MetaEntry(json.dumps(recipe, sort_keys=True), "STRING")
    return meta


def _hf_config(config: dict[str, Any], plan: Plan) -> dict[str, Any]:
    config = dict(config)
    if "num_hidden_layers" in config:
        config["num_hidden_layers"] = plan.layers
    rows = [j.rows for j in plan.jobs if j.rows]
    if rows and "vocab_size" in config:
        config["vocab_size"] = max(rows)
    return config


def _write_folder(out: Path, items: list, meta: dict[str, MetaEntry], ref: ModelReader, plan: Plan,
                  shard_bytes: int) -> list[str]:
    from genome.formats import write_safetensors

    groups: list[list] = [[]]
    size = 0
    for info, read in items:
        if groups[-1] and size + info.nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((info, read))
        size += info.nbytes
    n = len(groups)
    names = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    st_meta = {"safetensors.format": MetaEntry("pt", "STRING")}
    with atomic_dir(out) as tmp:
        for name, group in zip(names, groups):
            write_safetensors(tmp / name, group, st_meta)
        if n > 1:
            weight_map = {info.name: name for name, group in zip(names, groups) for info, _ in group}
            index = {"metadata": {"total_size": sum(i.nbytes for i, _ in items)}, "weight_map": weight_map}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        folder = ref.path if ref.path.is_dir() else ref.path.parent
        hf = meta.get("cogitans.hf_config")
        if hf is not None:
            (tmp / "config.json").write_text(json.dumps(json.loads(hf.value), indent=2, sort_keys=True))
        for side in _SIDE_FILES:
            if (folder / side).is_file():
                shutil.copyfile(folder / side, tmp / side)
        (tmp / "merge_config.json").write_text(meta["cogitans.merge"].value)
    return names
