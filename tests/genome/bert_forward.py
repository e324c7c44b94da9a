"""A plain-torch BERT encoder forward with mean pooling, enough to run MiniLM-L6 (no tokenizer)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bert_embed(sd: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor, layers: int = 6,
               heads: int = 12, eps: float = 1e-12) -> torch.Tensor:
    """Sentence embeddings: BERT encoder, mean pooling over real tokens, L2 normalised.

    Args:
        sd: Hugging Face BERT state dict (float32).
        ids: token ids, (B, T).
        mask: 1 for real tokens, 0 for padding, (B, T).

    Returns:
        (B, H) unit vectors.
    """
    b, t = ids.shape
    x = (sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.position_embeddings.weight"][:t]
         + sd["embeddings.token_type_embeddings.weight"][0])  # (B, T, H)
    h = x.shape[-1]
    x = F.layer_norm(x, (h,), sd["embeddings.LayerNorm.weight"], sd["embeddings.LayerNorm.bias"], eps)
    bias = (1.0 - mask[:, None, None, :].float()) * -1e9  # (B, 1, 1, T)
    dh = h // heads
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def lin(v: torch.Tensor, name: str) -> torch.Tensor:
            return F.linear(v, sd[p + name + ".weight"], sd[p + name + ".bias"])

        def split(v: torch.Tensor) -> torch.Tensor:
            return v.view(b, t, heads, dh).transpose(1, 2)  # (B, heads, T, dh)

        q, k, v = (split(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + bias, dim=-1)  # (B, heads, T, T)
        ctx = (att @ v).transpose(1, 2).reshape(b, t, h)
        x = F.layer_norm(lin(ctx, "attention.output.dense") + x, (h,), sd[p + "attention.output.LayerNorm.weight"],
                         sd[p + "attention.output.LayerNorm.bias"], eps)
        ff = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
        x = F.layer_norm(ff + x, (h,), sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"], eps)
    m = mask[..., None].float()
    pooled = (x * m).sum(1) / m.sum(1)  # (B, H)
    return F.normalize(pooled, dim=-1)
