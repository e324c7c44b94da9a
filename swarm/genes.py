"""Agents built from shared genes: brains as gene references into one pool shared by the colonies.

An agent's P parameters (the flat layout of `swarm.brain`) are cut into nb = ceil(P / B) blocks
of B; each block is a gene. A colony keeps, per slot, the (nb,) ids of its agent's genes; the pool
keeps every live gene once, either

- stored: a bank row, float32 (B,); in ternary mode int8 trits (B,) and a scale (4x smaller); or
- lazy: (parent gene, noise-table offset, sigma), rebuilt when used as step(parent, sigma * noise)
  with noise = table[offset : offset + B]; a gene `max_depth` lazy steps from a stored one is stored.

A child shares every gene of its parent that its mutation leaves alone:
- ``dense``: every block gets noise (nothing shared, the population's weights as before);
- ``sparse``: round(fraction * nb) blocks, at least one, chosen at random per child;
- ``ternary``: like sparse, on ternary genes: step() re-rounds to the parent's trit grid.

Forward passes stay batched: a chunk of agents' brains is materialised into one (n, P) tensor
(each distinct gene once) and goes through `swarm.brain.forward` unchanged.

Reference counts: agents holding a gene plus lazy genes derived from it; a gene with neither is
freed (its bank row too), which may free its parent in turn. `swarm.gene_stats` keeps the level
keys and the per-step pool_* metrics.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from swarm import brain
from swarm.gene_stats import GeneStats
from swarm.noise import NoiseTable
from swarm.params import SwarmSpec

_RECORD_BYTES = 8 + 8 + 8 + 4 + 4 + 4 + 4 + 4 + 2  # row, parent, offset, sigma, scale, depth, refs x2, block


def _grow(t: torch.Tensor, n: int, fill: float = 0) -> torch.Tensor:
    """`t` with at least n rows (capacity doubles)."""
    if len(t) >= n:
        return t
    out = torch.full((max(n, 2 * len(t), 64), *t.shape[1:]), fill, dtype=t.dtype)
    out[: len(t)] = t
    return out


class GeneBrains:
    """The shared gene pool and every colony's gene references (see the module docstring)."""

    def __init__(self, spec: SwarmSpec, noise: NoiseTable, gen: torch.Generator) -> None:
        g = spec.genes
        self.spec, self.noise, self.gen = spec, noise, gen
        self.P = brain.param_count(spec.brain)
        self.B = min(g.block, self.P)
        self.nb = math.ceil(self.P / self.B)
        self.width = torch.full((self.nb,), self.B, dtype=torch.int64)
        self.width[-1] = self.P - (self.nb - 1) * self.B
        self.mode, self.lazy, self.max_depth = spec.mutation.mode, g.lazy, g.max_depth
        self.ternary = self.mode == "ternary"
        self.bank = torch.zeros(0, self.B, dtype=torch.int8 if self.ternary else torch.float32)
        self.free_rows: list[int] = []
        self.rows_used = 0
        z64 = torch.zeros(0, dtype=torch.int64)
        self.row, self.parent, self.offset = z64.clone(), z64.clone(), z64.clone()
        self.sigma, self.scale = torch.zeros(0), torch.zeros(0)
        self.depth = torch.zeros(0, dtype=torch.int32)
        self.agent_refs = torch.zeros(0, dtype=torch.int32)
        self.child_refs = torch.zeros(0, dtype=torch.int32)
        self.block = torch.zeros(0, dtype=torch.int16)
        self.free_genes: list[int] = []
        self.genes_used = 0
        self.slots: list[torch.Tensor] = []  # per colony: (S, nb) gene ids, -1 for a free slot
        self.stats = GeneStats(self, g.levels)

    # ---- building --------------------------------------------------------------------------
    def adopt(self, colonies: list[Any]) -> None:
        """Turn every colony's dense (S, P) brains into gene references; drop the dense copies.

        `slots[c]` is colony c's references (by `colony.index`); a pool that holds some colonies
        only (a Ray colony actor holds its own) keeps empty (0, nb) lists for the others.
        """
        for colony in colonies:
            st = colony.state
            refs = torch.full((len(st.alive), self.nb), -1, dtype=torch.int64)
            live = st.alive.nonzero().squeeze(1)
            if len(live):
                refs[live] = self.found(st.params[live])
            while len(self.slots) <= colony.index:
                self.slots.append(torch.full((0, self.nb), -1, dtype=torch.int64))
            self.slots[colony.index] = refs
            st.params = st.params[:, :0]  # (S, 0): the genes hold the weights now
            colony.genes = self

    def _blocks(self, flat: torch.Tensor) -> torch.Tensor:
        """(n, P) -> (n, nb, B), the last block zero-padded."""
        padded = torch.nn.functional.pad(flat, (0, self.nb * self.B - self.P))
        return padded.view(len(flat), self.nb, self.B)

    def found(self, flat: torch.Tensor, rounded: bool = False) -> torch.Tensor:
        """Stored genes for dense brains (n, P) (founders, or brains arriving from another pool);
        returns their (n, nb) gene ids. In ternary mode the blocks are rounded to trits with their
        absmean as scale; `rounded` brains (materialised by a ternary pool) keep their values
        exactly (scale = each block's largest magnitude)."""
        n = len(flat)
        values = self._blocks(flat).reshape(n * self.nb, self.B)
        block = torch.arange(self.nb).repeat(n)
        if not self.ternary:
            scale = torch.ones(len(values))
        elif rounded:
            scale = values.abs().amax(1).clamp_min(1e-8)
        else:
            scale = self._scale_of(values, block)
        if self.ternary:
            values = self._round(values, scale)
        ids = self._alloc(len(values), block, parent=torch.full((len(values),), -1), scale=scale)
        self._store(ids, values)
        self.agent_refs[ids] += 1
        self.stats.created(ids, values)
        self.stats.referenced(ids)
        return ids.view(n, self.nb)

    def _scale_of(self, values: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        w = self.width[block].float()
        return (values.abs().sum(1) / w).clamp_min(1e-8)  # absmean over the real (unpadded) width

    @staticmethod
    def _round(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return (values / scale[:, None]).round_().clamp_(-1, 1) * scale[:, None] + 0.0  # no -0.0

    def _alloc(self, n: int, block: torch.Tensor, parent: torch.Tensor, scale: torch.Tensor,
               offset: torch.Tensor | None = None, sigma: torch.Tensor | None = None) -> torch.Tensor:
        take = min(n, len(self.free_genes))
        reused = self.free_genes[len(self.free_genes) - take:]
        del self.free_genes[len(self.free_genes) - take:]
        ids = torch.tensor(reused + list(range(self.genes_used, self.genes_used + n - take)), dtype=torch.int64)
        self.genes_used += n - take
        for name, fill in (("row", -1), ("parent", -1), ("offset", 0), ("sigma", 0), ("scale", 0), ("depth", 0),
                           ("agent_refs", 0), ("child_refs", 0), ("block", 0)):
            setattr(self, name, _grow(getattr(self, name), self.genes_used, fill))
        self.row[ids], self.parent[ids], self.block[ids] = -1, parent, block.to(torch.int16)
        self.offset[ids] = offset if offset is not None else 0
        self.sigma[ids] = sigma if sigma is not None else 0.0
        self.scale[ids] = scale
        has_parent = parent >= 0
        self.depth[ids] = torch.where(has_parent, self.depth[parent.clamp_min(0)] + 1, 0).to(torch.int32)
        self.agent_refs[ids], self.child_refs[ids] = 0, 0
        return ids

    def _store(self, ids: torch.Tensor, values: torch.Tensor) -> None:
        """Give genes `ids` bank rows holding `values` (n, B) and make them roots (depth 0)."""
        n = len(ids)
        take = min(n, len(self.free_rows))
        rows = self.free_rows[len(self.free_rows) - take:]
        del self.free_rows[len(self.free_rows) - take:]
        rows = torch.tensor(rows + list(range(self.rows_used, self.rows_used + n - take)), dtype=torch.int64)
        self.rows_used += n - take
        self.bank = _grow(self.bank, self.rows_used)
        if self.ternary:
            self.bank[rows] = (values / self.scale[ids][:, None]).round().to(torch.int8)
        else:
            self.bank[rows] = values
        self.row[ids] = rows
        keep = self.parent[ids] >= 0  # a stored child no longer needs its parent
        self._unref_parents(self.parent[ids][keep])
        self.parent[ids] = -1
        self.depth[ids] = 0

    # ---- reading ---------------------------------------------------------------------------
    def _step(self, values: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """One mutation step for lazy genes `genes` on their parents' values (n, B)."""
        noise = self.noise.slices(self.offset[genes], self.B)  # (n, B)
        out = torch.addcmul(values, noise, self.sigma[genes][:, None])
        if self.ternary:
            out = self._round(out, self.scale[genes])
        last = self.block[genes].long() == self.nb - 1
        if bool(last.any()):
            out[last, int(self.width[-1]):] = 0.0
        return out

    def materialise(self, genes: torch.Tensor) -> torch.Tensor:
        """Values of genes (U,) -> (U, B) float32, each lazy chain replayed root first."""
        depth = self.depth[genes].long()
        d_max = int(depth.max()) if len(genes) else 0
        chain = [genes]
        for _ in range(d_max):
            cur = chain[-1]
            chain.append(torch.where(self.parent[cur] >= 0, self.parent[cur], cur))
        root = chain[-1] if d_max else genes
        rows = self.row[root]
        values = torch.index_select(self.bank, 0, rows).float()
        if self.ternary:
            values *= self.scale[root][:, None]
        for k in range(d_max - 1, -1, -1):  # step k: genes whose chain has a lazy link at distance k
            active = (depth > k).nonzero().squeeze(1)
            if len(active):
                values[active] = self._step(values[active], chain[k][active])
        return values

    def params(self, colony: int, slots: torch.Tensor) -> torch.Tensor:
        """Materialised brains of slots (n,) of a colony: (n, P) float32."""
        refs = self.slots[colony][slots]  # (n, nb)
        unique, inverse = torch.unique(refs, return_inverse=True)
        values = self.materialise(unique)  # each distinct gene once
        flat = torch.index_select(values, 0, inverse.flatten())  # (n * nb, B)
        return flat.view(len(slots), self.nb * self.B)[:, : self.P]

    def forward(self, colony: int, queries: torch.Tensor, memory: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """`brain.forward` over slots [0, S') in chunks; only slots with queries are computed.

        Args:
            queries: (S', Q, D) padded queries; memory: (S', M); counts: (S',) queries per slot.
        """
        out = queries.new_zeros(queries.shape)
        busy = (counts > 0).nonzero().squeeze(1)
        step = self.spec.genes.chunk
        for lo in range(0, len(busy), step):
            s = busy[lo: lo + step]
            out[s] = brain.forward(self.params(colony, s), self.spec.brain, queries[s], memory[s])
        return out

    # ---- division and death ----------------------------------------------------------------
    def mutate(self, parents: torch.Tensor) -> torch.Tensor:
        """Children's gene ids (n, nb) from their parents' (n, nb), with this mode's mutation."""
        n = len(parents)
        if n == 0:
            return parents
        if self.mode == "dense":
            chosen = torch.ones(n, self.nb, dtype=torch.bool)
        else:
            k = max(1, round(self.spec.mutation.fraction * self.nb))
            order = torch.rand(n, self.nb, generator=self.gen).argsort(dim=1)[:, :k]
            chosen = torch.zeros(n, self.nb, dtype=torch.bool).scatter_(1, order, True)
        children = parents.clone()
        sigma = self.spec.mutation.sigma
        if sigma == 0.0:  # nothing changes: the child shares every gene
            return children
        who, which = chosen.nonzero(as_tuple=True)
        base = parents[who, which]  # (m,)
        m = len(base)
        offsets = self.noise.offsets(m, self.B, self.gen)
        ids = self._alloc(m, which, parent=base, scale=self.scale[base], offset=offsets,
                          sigma=torch.full((m,), sigma))
        self.child_refs.index_add_(0, base, torch.ones(m, dtype=torch.int32))
        values = None
        deep = self.depth[ids] > self.max_depth if self.lazy else torch.ones(m, dtype=torch.bool)
        if bool(deep.any()) or self.stats.levels >= 2:
            values = self.materialise(ids)
        if bool(deep.any()):
            self._store(ids[deep], values[deep])
        children[who, which] = ids
        self.agent_refs.index_add_(0, children.flatten(), torch.ones(children.numel(), dtype=torch.int32))
        self.stats.created(ids, values)
        self.stats.referenced(children.flatten())
        return children

    def release(self, genes: torch.Tensor) -> None:
        """Drop one agent reference per entry of `genes` (any shape); free what nobody holds."""
        genes = genes.flatten()
        genes = genes[genes >= 0]
        if len(genes) == 0:
            return
        self.agent_refs.index_add_(0, genes, torch.full((len(genes),), -1, dtype=torch.int32))
        self.stats.unreferenced(genes)
        self._free_unheld(torch.unique(genes))

    def _unref_parents(self, parents: torch.Tensor) -> None:
        if len(parents):
            self.child_refs.index_add_(0, parents, torch.full((len(parents),), -1, dtype=torch.int32))
            self._free_unheld(torch.unique(parents))

    def _free_unheld(self, candidates: torch.Tensor) -> None:
        while len(candidates):
            dead = candidates[(self.agent_refs[candidates] == 0) & (self.child_refs[candidates] == 0)
                              & (self.block[candidates] >= 0)]
            if len(dead) == 0:
                return
            self.stats.freed(dead)
            rows = self.row[dead]
            self.free_rows += rows[rows >= 0].tolist()
            self.free_genes += dead.tolist()
            self.block[dead] = -1  # marks a free record
            parents = self.parent[dead]
            parents = parents[parents >= 0]
            self.child_refs.index_add_(0, parents, torch.full((len(parents),), -1, dtype=torch.int32))
            candidates = torch.unique(parents)

    def vacate(self, colony: int, gone: torch.Tensor) -> None:
        """Release the genes of a colony's slots where `gone` (bool (S,): agents that died or
        are being replaced) and mark those slots free."""
        refs = self.slots[colony]
        gone = gone & (refs[:, 0] >= 0)
        self.release(refs[gone])
        refs[gone] = -1

    def after_divide(self, model: Any, before: torch.Tensor) -> None:
        """Release the genes of agents that died, give children their parents' genes, mutated.

        Args:
            model: the `SwarmModel` right after `evolution.divide`.
            before: (C * S,) agent id per global slot before the division.
        """
        after = model._global("agent_id")
        cap = model.capacity
        gone = ((before != after) & (before >= 0)).view(len(self.slots), cap)  # occupants that left
        for c in range(len(self.slots)):
            self.vacate(c, gone[c])
        births = model.last_births
        if len(births.agent_id) == 0:
            return
        parent_at, child_at = model._locate(births.parent_id), model._locate(births.agent_id)
        parents = torch.stack([self.slots[int(i) // cap][int(i) % cap] for i in parent_at]) \
            if len(parent_at) < 8 else torch.cat(self.slots)[parent_at]
        children = self.mutate(parents)
        flat = torch.cat(self.slots)
        flat[child_at] = children
        for c in range(len(self.slots)):
            self.slots[c] = flat[c * cap:(c + 1) * cap].clone()

    # ---- accounting ------------------------------------------------------------------------
    @staticmethod
    def metric_names(spec: SwarmSpec) -> tuple[str, ...]:
        """The pool_* metric names a pool built from `spec` reports."""
        return GeneBrains(spec, None, torch.Generator()).stats.metric_names()  # type: ignore[arg-type]

    def nbytes(self, population: int) -> int:
        """Bytes the shared representation holds for the live genes and `population` agents."""
        live = int((self.block[: self.genes_used] >= 0).sum())
        row_bytes = self.B * self.bank.element_size()
        stored_rows = self.rows_used - len(self.free_rows)
        return stored_rows * row_bytes + live * _RECORD_BYTES + population * self.nb * 8

    def metrics(self, population: int) -> dict[str, float]:
        return self.stats.metrics(population)

    def state_dict(self) -> dict[str, Any]:
        names = ("row", "parent", "offset", "sigma", "scale", "depth", "agent_refs", "child_refs", "block")
        return {"bank": self.bank[: self.rows_used].clone(), "free_rows": list(self.free_rows),
                "rows_used": self.rows_used, "free_genes": list(self.free_genes), "genes_used": self.genes_used,
                **{n: getattr(self, n)[: self.genes_used].clone() for n in names},
                "slots": [s.clone() for s in self.slots], "stats": self.stats.state_dict()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.bank, self.rows_used = d["bank"].clone(), int(d["rows_used"])
        self.free_rows, self.free_genes = list(d["free_rows"]), list(d["free_genes"])
        self.genes_used = int(d["genes_used"])
        for n in ("row", "parent", "offset", "sigma", "scale", "depth", "agent_refs", "child_refs", "block"):
            setattr(self, n, d[n].clone())
        self.slots = [s.clone() for s in d["slots"]]
        self.stats.load_state_dict(d["stats"])
