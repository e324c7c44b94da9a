"""Two toy tasks on the real MiniLM-L6 and cheap fine-tunes that teach them (for the merge tests).

Each task is a fixed random direction u in embedding space and two classes of sentences: the
task's score of a sentence is its signed margin y * <embedding, u> (y = +1 or -1 by class), about
0 for the shipped model. A fine-tune raises it by a few dozen SGD steps on a few layer-5 tensors,
with layer 5's input computed once (layers 0-4 are frozen).

- sentiment: positive vs negative reviews ("the movie was wonderful" / "... awful"); trains
  layer 5's feed-forward weights (intermediate.dense, output.dense).
- topic: sport vs cooking ("we played football today" / "we cooked pasta today"); trains layer
  5's output.dense and attention.output.dense (output.dense is shared with sentiment: the merges
  have a conflict to resolve).

Held-out sentences use subjects, adjectives and phrases never seen in training.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

LAST = "encoder.layer.5."
SUBJECTS = ["the movie", "the food", "the hotel", "the service", "the concert", "the book", "the game", "the trip"]
POSITIVE = ["wonderful", "great", "excellent", "lovely", "fantastic", "delightful"]
NEGATIVE = ["awful", "terrible", "horrible", "dreadful", "bad", "disappointing"]
SPORT = ["we played football", "she won the tennis match", "they scored a goal", "he ran a marathon",
         "the team trained hard", "our club won the league", "the players kicked the ball", "he swam ten laps"]
FOOD = ["we cooked pasta", "she baked a cake", "they ate fresh bread", "he fried some eggs",
        "the chef made soup", "our kitchen smelled of garlic", "the cook roasted chicken", "he tasted the sauce"]
WHEN = [" today", " yesterday", " last night"]
NEUTRAL = ["the train leaves at noon", "this is a red house", "the meeting is on monday", "water boils at high heat",
           "the library opens early", "a letter arrived this morning", "the road turns left", "clouds cover the hills"]
TASKS = {"sentiment": (LAST + "intermediate.dense.weight", LAST + "output.dense.weight"),
         "topic": (LAST + "output.dense.weight", LAST + "attention.output.dense.weight")}


def sentences(task: str, held_out: bool) -> tuple[list[str], torch.Tensor]:
    """Sentences and their labels (+1 / -1) of a task's training or held-out split."""
    if task == "sentiment":
        subj = SUBJECTS[6:] if held_out else SUBJECTS[:4]
        pos, neg = (POSITIVE[4:], NEGATIVE[4:]) if held_out else (POSITIVE[:4], NEGATIVE[:4])
        texts = [f"{s} was {a}" for s in subj for a in pos] + [f"{s} was {a}" for s in subj for a in neg]
        n = len(subj) * len(pos)
    else:
        sport, food, when = (SPORT[6:], FOOD[6:], WHEN) if held_out else (SPORT[:6], FOOD[:6], WHEN[:2])
        texts = [p + w for p in sport for w in when] + [p + w for p in food for w in when]
        n = len(sport) * len(when)
    return texts, torch.tensor([1.0] * n + [-1.0] * (len(texts) - n))


def direction(task: str, width: int = 384) -> torch.Tensor:
    g = torch.Generator().manual_seed({"sentiment": 11, "topic": 12}[task])
    return F.normalize(torch.randn(width, generator=g), dim=0)


class WordPiece:
    """BERT uncased tokenisation from vocab.txt: lower case, split on spaces and punctuation,
    greedy longest-match word pieces (``##`` continuations)."""

    def __init__(self, vocab: Path) -> None:
        self.ids = {tok: i for i, tok in enumerate(vocab.read_text(encoding="utf-8").splitlines())}

    def pieces(self, word: str) -> list[int]:
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start and ((word[start:end] if start == 0 else "##" + word[start:end]) not in self.ids):
                end -= 1
            if end == start:
                return [self.ids["[UNK]"]]
            out.append(self.ids[word[start:end] if start == 0 else "##" + word[start:end]])
            start = end
        return out

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [[self.ids["[CLS]"]] + [p for w in re.findall(r"\w+|[^\w\s]", t.lower()) for p in self.pieces(w)]
                + [self.ids["[SEP]"]] for t in texts]
        width = max(map(len, rows))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        return ids, (ids != 0).long()


def embed_input(sd: dict[str, torch.Tensor], ids: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Token + position + type embeddings, layer-normed: (B, T, H)."""
    x = (sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.position_embeddings.weight"][: ids.shape[1]]
         + sd["embeddings.token_type_embeddings.weight"][0])
    return F.layer_norm(x, (x.shape[-1],), sd["embeddings.LayerNorm.weight"], sd["embeddings.LayerNorm.bias"], eps)


def layers(sd: dict[str, torch.Tensor], x: torch.Tensor, mask: torch.Tensor, start: int, stop: int,
           heads: int = 12, eps: float = 1e-12) -> torch.Tensor:
    """BERT encoder layers [start, stop) on hidden states x (B, T, H)."""
    b, t, h = x.shape
    bias = (1.0 - mask[:, None, None, :].float()) * -1e9
    dh = h // heads
    for i in range(start, stop):
        p = f"encoder.layer.{i}."

        def lin(v: torch.Tensor, name: str, p: str = p) -> torch.Tensor:
            return F.linear(v, sd[p + name + ".weight"], sd[p + name + ".bias"])

        q, k, v = (lin(x, f"attention.self.{n}").view(b, t, heads, dh).transpose(1, 2) for n in ("query", "key", "value"))
        ctx = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + bias, -1) @ v).transpose(1, 2).reshape(b, t, h)
        x = F.layer_norm(lin(ctx, "attention.output.dense") + x, (h,), sd[p + "attention.output.LayerNorm.weight"],
                         sd[p + "attention.output.LayerNorm.bias"], eps)
        ff = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
        x = F.layer_norm(ff + x, (h,), sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"], eps)
    return x


def pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].float()
    return F.normalize((x * m).sum(1) / m.sum(1), dim=-1)


def margin(emb: torch.Tensor, labels: torch.Tensor, task: str) -> float:
    """Mean signed margin y * <e, u> of a task."""
    return float((labels * (emb @ direction(task))).mean())


def finetune(sd: dict[str, torch.Tensor], tok: WordPiece, task: str, steps: int = 30, lr: float = 0.5) -> dict[str, torch.Tensor]:
    """A copy of `sd` with the task's layer-5 tensors trained by SGD on its training sentences."""
    texts, labels = sentences(task, held_out=False)
    ids, mask = tok(texts)
    with torch.no_grad():
        h5 = layers(sd, embed_input(sd, ids), mask, 0, 5)  # layer 5's input, computed once
    new = dict(sd)
    trained = {name: sd[name].clone().requires_grad_(True) for name in TASKS[task]}
    new.update(trained)
    u = direction(task)
    opt = torch.optim.SGD(list(trained.values()), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        emb = pool(layers(new, h5, mask, 5, 6), mask)
        loss = F.softplus(-20.0 * labels * (emb @ u)).mean()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in new.items()}
