"""Hugging Face model folders: ``config.json`` plus one or more weight shards.

Shards are found through ``model.safetensors.index.json`` / ``pytorch_model.bin.index.json`` when
present, else every ``*.safetensors`` file, else every ``pytorch_model*.bin``/``*.pt``/``*.pth``.
The folder reads as one model; ``config.json`` becomes metadata (``cogitans.hf_config``) and
supplies the architecture and the GGUF hyper-parameter keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from genome.errors import BadInput
from genome.formats.base import MetaEntry, ModelReader
from genome.formats.names import count_blocks, gguf_arch

_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_TORCH_GLOBS = ("pytorch_model*.bin", "*.pt", "*.pth")
#: config.json key -> GGUF key suffix (prefixed with the architecture name).
_HPARAMS = {"hidden_size": "embedding_length", "intermediate_size": "feed_forward_length",
            "num_attention_heads": "attention.head_count", "max_position_embeddings": "context_length",
            "layer_norm_eps": "attention.layer_norm_epsilon", "rms_norm_eps": "attention.layer_norm_rms_epsilon"}


class HFFolderModel(ModelReader):
    """A Hugging Face model folder read as one model, shard by shard."""

    format = "hf"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        config = _read_config(self.path)
        self.arch = gguf_arch(config.get("model_type"))
        shards = find_shards(self.path)
        self._shards: list[ModelReader] = []
        self._owner: dict[str, ModelReader] = {}
        try:
            for shard in shards:
                reader = _open_shard(shard, self.arch)
                self._shards.append(reader)
                for name in reader.names():
                    if name in self._owner:
                        raise BadInput(f"{self.path}: tensor {name!r} appears in two shards "
                                       f"({self._owner[name].path.name}, {shard.name})")
                    self._owner[name] = reader
        except BadInput:
            self.close()
            raise
        infos = [info for reader in self._shards for info in reader.tensors()]
        for reader in self._shards:
            self.metadata.update(reader.metadata)
        self.metadata.update(_config_metadata(config, self.arch, count_blocks([i.name for i in infos])))
        self._set_infos(infos)

    def raw(self, name: str) -> np.ndarray:
        """Stored bytes from the shard that holds `name`: uint8, (nbytes,)."""
        self.info(name)
        return self._owner[name].raw(name)

    def close(self) -> None:
        """Close every shard."""
        for reader in self._shards:
            reader.close()


def find_shards(folder: Path) -> list[Path]:
    """The weight files of a model folder, in order; `BadInput` if there are none."""
    for index in _INDEXES:
        idx = folder / index
        if idx.is_file():
            try:
                weight_map = json.loads(idx.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise BadInput(f"{idx}: not a valid shard index ({err})") from None
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (folder / f).is_file()]
            if missing:
                raise BadInput(f"{idx}: shard {missing[0]} is missing from {folder}")
            return [folder / f for f in files]
    found = sorted(folder.glob("*.safetensors"))
    if not found:
        found = sorted({p for g in _TORCH_GLOBS for p in folder.glob(g)})
    if not found:
        raise BadInput(f"{folder}: no weights found; expected *.safetensors, pytorch_model*.bin, "
                       f"*.pt, *.gguf or an organ folder with manifest.json")
    return found


def apply_sibling_config(reader: ModelReader) -> ModelReader:
    """Give a single weight file the architecture and metadata of a ``config.json`` beside it."""
    config = _read_config(reader.path.parent)
    if config and reader.arch is None:
        reader.arch = gguf_arch(config.get("model_type"))
        reader.metadata.update(_config_metadata(config, reader.arch, count_blocks(reader.names())))
        reader._set_infos(reader.tensors())  # canonical names for the architecture now known
    return reader


def _open_shard(path: Path, arch: str | None) -> ModelReader:
    from genome.formats.detect import sniff

    kind = sniff(path)
    if kind == "safetensors":
        from genome.formats.safetensors_io import SafetensorsModel

        return SafetensorsModel(path, arch)
    from genome.formats.torch_io import TorchModel

    return TorchModel(path, arch)


def _read_config(folder: Path) -> dict[str, Any]:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return {}
    try:
        config = json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadInput(f"{cfg}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise BadInput(f"{cfg}: expected a JSON object")
    return config


def _config_metadata(config: dict[str, Any], arch: str | None, n_blocks: int) -> dict[str, MetaEntry]:
    if not config:
        return {}
    meta = {"cogitans.hf_config": MetaEntry(json.dumps(config, sort_keys=True), "STRING")}
    if config.get("_name_or_path"):
        meta["general.name"] = MetaEntry(str(config["_name_or_path"]), "STRING")
    if arch:
        meta[f"{arch}.block_count"] = MetaEntry(int(config.get("num_hidden_layers", n_blocks)), "UINT32")
        for key, suffix in _HPARAMS.items():
            value = config.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            kind = "FLOAT32" if isinstance(value, float) else "UINT32"
            meta[f"{arch}.{suffix}"] = MetaEntry(value, kind)
    return meta
