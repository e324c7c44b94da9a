"""Parent links of every agent that ever lived, exportable as an ALife-standard phylogeny CSV."""

from __future__ import annotations

from pathlib import Path

import torch


class LineageLog:
    """Append-only record of births and deaths, kept as batches of tensors."""

    def __init__(self) -> None:
        self._born: list[torch.Tensor] = []  # each (n, 5): id, parent, root, colony, step
        self._died: list[torch.Tensor] = []  # each (m, 2): id, step
        self._mates: list[torch.Tensor] = []  # each (k, 2): id, second parent (crossover births only)

    def add_births(self, ids: torch.Tensor, parents: torch.Tensor, roots: torch.Tensor,
                   colonies: torch.Tensor, step: int, mates: torch.Tensor | None = None) -> None:
        """(n,) ids, parents, roots, colonies; `mates` (n,) second parents (-1: none) under crossover."""
        if len(ids):
            steps = torch.full_like(ids, step)
            self._born.append(torch.stack([ids, parents, roots, colonies, steps], 1))
        if mates is not None and bool((mates >= 0).any()):
            self._mates.append(torch.stack([ids, mates], 1)[mates >= 0])

    def add_deaths(self, ids: torch.Tensor, step: int) -> None:
        if len(ids):
            self._died.append(torch.stack([ids, torch.full_like(ids, step)], 1))

    @property
    def births(self) -> torch.Tensor:
        """(n, 5) int64 rows: id, parent (-1 for founders), root, colony, birth step."""
        return torch.cat(self._born) if self._born else torch.zeros(0, 5, dtype=torch.int64)

    @property
    def deaths(self) -> torch.Tensor:
        """(m, 2) int64 rows: id, death step."""
        return torch.cat(self._died) if self._died else torch.zeros(0, 2, dtype=torch.int64)

    @property
    def mates(self) -> torch.Tensor:
        """(k, 2) int64 rows: id, second parent, for children bred by crossover."""
        return torch.cat(self._mates) if self._mates else torch.zeros(0, 2, dtype=torch.int64)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"births": self.births, "deaths": self.deaths, "mates": self.mates}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        self._born, self._died = [d["births"]], [d["deaths"]]
        self._mates = [d["mates"]] if "mates" in d else []  # checkpoints before mates were recorded

    def export_alife(self, path: str | Path) -> Path:
        """Write the phylogeny in the ALife data standard (id, ancestor_list, origin_time, ..., agent_id).

        phylotrackpy's Systematics replays the births and deaths in time order and writes the file.
        It keeps one parent per taxon: a crossover child's ancestor is the parent that divided; its
        second parent is in `mates` and in the run store's lineage table (`mate_id`).
        """
        from phylotrackpy import systematics

        path = Path(path)
        events = [(int(s), 0, int(i), int(p)) for i, p, _, _, s in self.births.tolist()]
        events += [(int(s), 1, int(i), -1) for i, s in self.deaths.tolist()]
        events.sort()
        phylo = systematics.Systematics(lambda org: org, True, True, True, False)
        phylo.add_snapshot_fun(lambda taxon: str(taxon.get_info()), "agent_id", "Cogitans agent id")
        taxa = {}
        for step, kind, agent, parent in events:
            phylo.set_update(step)
            if kind == 0:
                taxa[agent] = phylo.add_org(agent, taxa[parent]) if parent in taxa else phylo.add_org(agent)
            elif agent in taxa:
                phylo.remove_org(taxa[agent])
        tmp = path.with_suffix(".tmp")
        phylo.snapshot(str(tmp))
        tmp.replace(path)
        return path
