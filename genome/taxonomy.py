"""Tensor taxonomy: which part of the network a tensor is, from its name alone.

An ordered table of regular expressions is matched against the canonical (GGUF-convention) name
first and the original name second; the first row that matches wins. Each row gives a functional
domain (attention, mlp, embedding, norm, head, adapter), a subtype (Q, K, V, O, QKV, gate, up,
down, vocab, position, layer, rms ...) and an anatomical role:

- skeleton: attention projections (attn_q/k/v/qkv/output);
- organ: feed-forward (ffn_gate/up/down, experts included);
- embedding: token_embd, position_embd, token_types;
- norm: every ``*_norm`` / LayerNorm / RMSNorm;
- adapter: ``lora_*`` tensors;
- head: output / lm_head / classifier / pooler;
- other: buffers (position_ids, rope_freqs) and anything unmatched (never an error).

Order matters: adapters before everything (a LoRA of attn_q is an adapter), norms before
attention (``attn_output_norm`` is a norm, not the O projection).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: Anatomical roles, in display order.
ROLES: tuple[str, ...] = ("skeleton", "organ", "embedding", "norm", "adapter", "head", "other")


@dataclass(frozen=True)
class Taxon:
    """Where a tensor sits: functional domain, subtype and anatomical role."""

    domain: str
    subtype: str
    role: str


_RULES: list[tuple[re.Pattern[str], Taxon]] = [
    (re.compile(p, re.IGNORECASE), Taxon(*t)) for p, t in [
        (r"lora[_.]?(a|b|down|up|magnitude)?\b|\blora_", ("adapter", "lora", "adapter")),
        (r"position_ids|inv_freq|rope_freqs|\bmasked_bias\b", ("other", "buffer", "other")),
        (r"rms_?norm|\brms\b", ("norm", "rms", "norm")),
        (r"_norm\b|layer_?norm|\bln_?\w*|\bnorm\b|norm\.(weight|bias)$", ("norm", "?", "norm")),
        (r"attn_qkv|query_key_value|c_attn\b|qkv_proj|\bWqkv\b", ("attention", "QKV", "skeleton")),
        (r"attn_q\b|q_proj|\.query\b|\bwq\b", ("attention", "Q", "skeleton")),
        (r"attn_k\b|k_proj|\.key\b|\bwk\b", ("attention", "K", "skeleton")),
        (r"attn_v\b|v_proj|\.value\b|\bwv\b", ("attention", "V", "skeleton")),
        (r"attn_output|attn_out\b|o_proj|attention\.output\.dense|c_proj.*attn|attn.*c_proj|\bwo\b",
         ("attention", "O", "skeleton")),
        (r"ffn_gate|gate_proj|\bw1\b|gate_up", ("mlp", "gate", "organ")),
        (r"ffn_up|up_proj|\bw3\b|intermediate\.dense|c_fc|fc1|dense_h_to_4h", ("mlp", "up", "organ")),
        (r"ffn_down|down_proj|\bw2\b|fc2|dense_4h_to_h|mlp\.c_proj|output\.dense", ("mlp", "down", "organ")),
        (r"token_embd|word_embeddings|embed_tokens|\bwte\b|tok_embeddings", ("embedding", "vocab", "embedding")),
        (r"position_embd|position_embeddings|\bwpe\b|pos_emb", ("embedding", "position", "embedding")),
        (r"token_types|token_type_embeddings", ("embedding", "type", "embedding")),
        (r"pooler", ("head", "pooler", "head")),
        (r"classifier|\bcls\b|score\.", ("head", "classifier", "head")),
        (r"^output\.|lm_head", ("head", "lm_head", "head")),
        (r"embed", ("embedding", "vocab", "embedding")),
        (r"attn|attention", ("attention", "other", "skeleton")),
        (r"ffn|mlp|feed_forward", ("mlp", "other", "organ")),
    ]
]
_OTHER = Taxon("other", "other", "other")


def classify(name: str, canonical: str | None = None, has_bias: bool | None = None) -> Taxon:
    """Classify one tensor by name.

    Args:
        name: the tensor's original name.
        canonical: its canonical (GGUF-convention) name, matched first when given.
        has_bias: for norms, whether the model has a bias next to this norm's weight; a norm
            with a bias is a LayerNorm, one without an RMSNorm. None means unknown (LayerNorm
            unless the name says RMS).

    Returns:
        The `Taxon`; unmatched names give domain/subtype/role ``other``.
    """
    for candidate in (canonical, name):
        if not candidate:
            continue
        for pattern, taxon in _RULES:
            if pattern.search(candidate):
                if taxon.subtype == "?":
                    sub = "rms" if has_bias is False else "layer"
                    return Taxon(taxon.domain, sub, taxon.role)
                return taxon
    return _OTHER


def classify_model(names: Iterable[tuple[str, str]]) -> dict[str, Taxon]:
    """Classify every tensor of one model, using sibling biases to tell LayerNorm from RMSNorm.

    Args:
        names: (original name, canonical name) per tensor.

    Returns:
        original name -> `Taxon`.
    """
    pairs = list(names)
    stems = {c.rsplit(".", 1)[0] for _, c in pairs if c.endswith(".bias")}
    out = {}
    for name, canon in pairs:
        stem = canon.rsplit(".", 1)[0] if canon.endswith((".weight", ".bias")) else canon
        out[name] = classify(name, canon, has_bias=stem in stems)
    return out


def matches(pattern: str, name: str, canonical: str, taxon: Taxon) -> bool:
    """True if a user's organ pattern selects this tensor.

    A pattern is a comma-separated list of terms; each term is a role or domain (``organ``,
    ``mlp``), or a shell glob matched against the canonical and the original name
    (``blk.*.ffn_*``, ``*.intermediate.*``).
    """
    from fnmatch import fnmatchcase

    for term in (t.strip() for t in pattern.split(",")):
        if not term:
            continue
        if term in (taxon.role, taxon.domain) or fnmatchcase(canonical, term) or fnmatchcase(name, term):
            return True
    return False
