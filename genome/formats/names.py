"""Canonical tensor names: Hugging Face and GGUF spellings mapped to one (GGUF) convention.

`encoder.layer.0.intermediate.dense.weight` (BERT, Hugging Face) and `blk.0.ffn_up.weight`
(GGUF) are the same tensor; everything downstream (taxonomy, graft matching) works on the
canonical name. The mapping is gguf's own `TensorNameMap`, built for the model's architecture;
when the architecture is unknown a short list of common ones is tried in order.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

#: Hugging Face `model_type` spellings that differ from gguf's architecture names.
HF_ARCH_ALIASES: dict[str, str] = {
    "gpt_neox": "gptneox", "mistral": "llama", "mixtral": "llama", "roberta": "bert",
    "xlm-roberta": "bert", "distilbert": "bert", "phi": "phi2", "gpt_bigcode": "starcoder",
    "nomic_bert": "nomic-bert", "modernbert": "modern-bert",
}
#: Tried in order when a model does not say what it is, or a name is not in its own map.
FALLBACK_ARCHS: tuple[str, ...] = ("llama", "bert", "gpt2", "qwen2", "phi3", "gemma", "gptneox",
                                   "falcon", "starcoder", "mpt", "bloom", "t5")
_SUFFIXES = (".weight", ".bias", ".scale")
_INT = re.compile(r"(?:^|\.)(\d+)(?=\.|$)")


def gguf_arch(name: str | None) -> str | None:
    """The gguf architecture name for a Hugging Face `model_type` or gguf name, or None."""
    if not name:
        return None
    from gguf.constants import MODEL_ARCH_NAMES

    name = HF_ARCH_ALIASES.get(name.lower(), name.lower())
    return name if name in MODEL_ARCH_NAMES.values() else None


@lru_cache(maxsize=32)
def _name_map(arch: str, n_blocks: int) -> Any:
    from gguf.constants import MODEL_ARCH_NAMES
    from gguf.tensor_mapping import TensorNameMap

    by_name = {v: k for k, v in MODEL_ARCH_NAMES.items()}
    return TensorNameMap(by_name[arch], n_blocks)


def count_blocks(names: list[str]) -> int:
    """1 + the largest layer index found in `names` (0 if none), capped at 4096."""
    found = [int(m) for n in names for m in _INT.findall(n)]
    return min(max(found) + 1, 4096) if found else 0


def canonical_names(names: list[str], arch: str | None) -> dict[str, str]:
    """Map every name to its canonical (GGUF-convention) name.

    Args:
        names: tensor names of one model, in any convention.
        arch: gguf architecture name (see `gguf_arch`) or None.

    Returns:
        name -> canonical name. Unmapped names map to themselves; if a name would take a canonical
        name that is already taken, it keeps its own name, so the result is always one-to-one.
    """
    n_blocks = count_blocks(names)
    arch = gguf_arch(arch)
    archs = ([arch] if arch else []) + [a for a in FALLBACK_ARCHS if a != arch]
    out: dict[str, str] = {}
    pending = list(names)
    for a in archs:
        if not pending:
            break
        mapping = _name_map(a, n_blocks)
        still = []
        for name in pending:
            canon = mapping.get_name(name, try_suffixes=_SUFFIXES)
            if canon is None:
                still.append(name)
            else:
                out[name] = canon
        pending = still
    # one-to-one: names already canonical keep themselves; a clash falls back to the original name
    used = {name for name in names if out.get(name, name) == name}
    result: dict[str, str] = {}
    for i, name in enumerate(names):
        canon = out.get(name, name)
        if canon != name:
            if canon in used:
                canon = name if name not in used else f"{name}~{i}"
            used.add(canon)
        result[name] = canon
    return result
