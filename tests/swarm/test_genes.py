"""Agents built from shared genes: children share unchanged genes, lazy genes rebuild exactly,
the forward pass equals the dense one, references balance, metrics, checkpoints, determinism."""

from __future__ import annotations

import pytest
import torch

from experiments.spec import validate
from swarm import brain
from swarm.model import METRICS, SwarmModel
from tests.conftest import SMALL

POOL_METRICS = {"pool_genes", "pool_unique_l1", "pool_unique_l2", "pool_unique_l3", "pool_unique_l4",
                "pool_bytes", "pool_bytes_naive", "pool_dedup_ratio"}


def spec(**sections):
    data = {**SMALL, "genes": {"enabled": True, "block": 1024, **sections.pop("genes", {})}}
    data.update(sections)
    return validate(data)


def run(s, steps, seed=0):
    model = SwarmModel(s, seed=seed)
    rows = []
    for _ in range(steps):
        model.step()
        rows.append({k: v for k, v in model.metrics.items() if k != "seconds"})
    return model, rows


def _references_balance(g) -> None:
    """Every live gene's agent count equals the references colonies hold; children hold parents."""
    held = torch.cat([s.flatten() for s in g.slots])
    held = held[held >= 0]
    counts = torch.bincount(held, minlength=g.genes_used)
    live = g.block[: g.genes_used] >= 0
    assert torch.equal(counts[live], g.agent_refs[: g.genes_used][live].long())
    assert int(counts[~live].sum()) == 0  # nobody points at a freed gene
    lazy = live & (g.parent[: g.genes_used] >= 0)
    kids = torch.bincount(g.parent[: g.genes_used][lazy], minlength=g.genes_used)
    assert torch.equal(kids[live], g.child_refs[: g.genes_used][live].long())
    # and nothing leaks: every live gene is held by an agent or by a lazy child
    assert bool(((g.agent_refs[: g.genes_used] > 0) | (g.child_refs[: g.genes_used] > 0))[live].all())


def test_sparse_children_share_every_unmutated_gene():
    s = spec(mutation={"mode": "sparse", "fraction": 0.1})
    model, rows = run(s, 25)
    g = model.genes
    k = max(1, round(0.1 * g.nb))
    table = model.agent_table()
    flat = torch.cat(g.slots)
    located = model._locate(table["agent_id"])
    by_id = dict(zip(table["agent_id"].tolist(), located.tolist()))
    checked = 0
    for child, parent in zip(table["agent_id"].tolist(), table["parent_id"].tolist()):
        if parent in by_id:  # parent still alive
            differ = int((flat[by_id[child]] != flat[by_id[parent]]).sum())
            assert differ == k
            checked += 1
    assert checked > 0 and sum(r["births"] for r in rows) > 0
    _references_balance(g)
    last = rows[-1]
    assert last["pool_unique_l1"] < 0.5 * last["pool_genes"]  # most genes are shared
    assert last["pool_dedup_ratio"] > 2 and last["pool_bytes_naive"] == last["population"] * g.P * 4


def test_dense_default_mode_is_untouched():
    model, _ = run(validate(SMALL), 3)
    assert model.genes is None and set(model.metrics) == set(METRICS)
    assert model.colonies[0].state.params.shape[1] == brain.param_count(model.spec.brain)


def test_gene_forward_equals_the_dense_forward_for_the_same_weights():
    model, _ = run(spec(mutation={"mode": "sparse"}, genes={"lazy": True}), 12)
    colony = model.colonies[0]
    st, g = colony.state, model.genes
    n = st.high_water
    dense = g.params(0, torch.arange(n))  # (n, P) materialised weights
    slots = st.alive.nonzero().squeeze(1).repeat_interleave(2)
    queries = torch.nn.functional.normalize(torch.randn(len(slots), model.spec.brain.embed_dim), dim=-1)
    via_genes = colony.answer(slots, queries)
    colony.genes, st.params = None, dense  # the same colony with dense weights
    via_dense = colony.answer(slots, queries)
    torch.testing.assert_close(via_genes, via_dense, rtol=0, atol=1e-6)


def test_lazy_genes_rebuild_as_parent_plus_table_noise_and_deep_ones_are_stored():
    model, _ = run(spec(mutation={"mode": "dense", "sigma": 0.02}, genes={"lazy": True, "max_depth": 2, "levels": 1},
                        replication={"threshold": 4}), 20)
    g = model.genes
    live = (g.block[: g.genes_used] >= 0).nonzero().squeeze(1)
    lazy = live[g.parent[live] >= 0]
    assert len(lazy) > 0 and int(g.depth[live].max()) <= 2 and (g.row[lazy] == -1).all()
    child = lazy[:5]
    parent_vals = g.materialise(g.parent[child])
    noise = g.noise.slices(g.offset[child], g.B)
    expected = torch.addcmul(parent_vals, noise, g.sigma[child][:, None])
    last = g.block[child].long() == g.nb - 1
    expected[last, int(g.width[-1]):] = 0
    assert torch.equal(g.materialise(child), expected)
    assert int((g.row[live] >= 0).sum()) < len(live)  # lazy genes hold no bank row
    _references_balance(g)


def test_ternary_genes_are_trits_and_smaller():
    model, rows = run(spec(mutation={"mode": "ternary", "fraction": 0.1}), 15)
    g = model.genes
    assert g.bank.dtype == torch.int8 and set(torch.unique(g.bank[: g.rows_used]).tolist()) <= {-1, 0, 1}
    vals = g.params(0, model.colonies[0].state.alive.nonzero().squeeze(1)[:3])
    blocks = vals[:, : g.B]
    assert len(torch.unique(blocks.abs()[0])) <= 2  # 0 and the block's scale
    assert rows[-1]["pool_dedup_ratio"] > 5  # trits: 1 byte a weight instead of 4, plus sharing


def test_pool_metrics_reach_the_run_store_and_runs_are_deterministic(tmp_path):
    from experiments import reader
    from experiments.runner import run_spec

    s = validate({**SMALL, "genes": {"enabled": True, "block": 1024}, "mutation": {"mode": "sparse"},
                  "run": {"steps": 6, "checkpoint_every": 0, "snapshot_every": 0}})
    summary = run_spec(s, tmp_path, progress=False)
    df = reader.metrics(summary["run_dir"])
    assert POOL_METRICS <= set(df.columns) and len(df) >= 6
    assert (df["pool_unique_l1"].iloc[1:] <= df["pool_genes"].iloc[1:]).all()
    _, a = run(s, 8, seed=3)
    _, b = run(s, 8, seed=3)
    assert a == b and POOL_METRICS <= set(a[-1])


def test_checkpoint_round_trip_in_gene_mode():
    s = spec(mutation={"mode": "sparse"}, genes={"lazy": True})
    a, _ = run(s, 8, seed=5)
    state = a.state_dict()
    b = SwarmModel(s, seed=5)
    b.load_state_dict(state)
    for _ in range(4):
        a.step()
        b.step()
        assert {k: v for k, v in a.metrics.items() if k != "seconds"} == \
            {k: v for k, v in b.metrics.items() if k != "seconds"}
    _references_balance(b.genes)


@pytest.mark.parametrize("mode", ["sparse", "ternary"])
def test_colony_actor_genes_take_a_child_from_another_colony_and_free_the_dead(mode):
    """The Ray colony actor's gene path, run in-process: a parent exported by colony 0 arrives in
    colony 1 as weights, is cut into genes there, and its child differs from it in exactly the
    mutated blocks (ternary arrivals keep their trits and scales exactly); agents that die release
    their genes; references balance throughout."""
    from swarm.ray_actors import ColonyWorker

    s = spec(mutation={"mode": mode, "fraction": 0.1, "sigma": 0.5})
    dense = SwarmModel(s.model_copy(update={"genes": s.genes.model_copy(update={"enabled": False})}), seed=4)
    workers = [ColonyWorker(c, col.state.to_dict(), s.brain, dense.noise, dense.projection, s.reproduction, s)
               for c, col in enumerate(dense.colonies)]
    src, dst = workers
    params, memory = src.export(torch.tensor([0, 1]))  # (2, P) weights of colony 0's agents 0 and 1
    if mode == "sparse":
        assert torch.equal(params, dense.colonies[0].state.params[:2])
    g = dst.genes
    live_before = int((g.block[: g.genes_used] >= 0).sum())
    alive = dst.state.alive.clone()
    alive[[0, 1]] = False  # two agents of colony 1 die ...
    free = (~alive).nonzero().squeeze(1)[2:4]  # ... and two children move into free slots
    alive[free] = True
    dst._gene_births(alive, free, torch.zeros(0, dtype=torch.int64), [params], seed=7)
    dst.state.alive = alive
    child = g.params(1, free)
    nb = g.nb
    for k in range(2):
        changed = sum(not torch.equal(child[k, j * g.B:(j + 1) * g.B], params[k, j * g.B:(j + 1) * g.B])
                      for j in range(nb))
        assert changed == max(1, round(0.1 * nb))
    assert bool((g.slots[1][[0, 1]] == -1).all())  # the dead hold nothing
    k = max(1, round(0.1 * nb))
    # the dead's 2 nb genes are freed; of the arrivals' 2 nb, the children share 2 (nb - k) and
    # replace 2 k by mutated genes (stored, so their parents are freed)
    assert int((g.block[: g.genes_used] >= 0).sum()) == live_before - 2 * nb + 2 * (nb - k) + 2 * k
    _references_balance(g)
