"""Ask a trained swarm a question in text, and turn a person's vote into fitness.

`load_swarm` opens a run directory (a `text_qa` run with a checkpoint) as a live `SwarmModel`;
`answer` runs the query flow of a simulation step (`swarm.query.respond`: memory lookup, gossip,
the agents, consensus) for questions and decodes the consensus to the nearest text of the answer
bank; `apply_vote` turns a thumbs up or down into rewards for the agents that answered and
applies them as a step does (`swarm.query.learn`, then division), and `record_vote` writes it
to the run store like a simulation step (metrics row, births, deaths) plus a `feedback` event.

Confidence is the consensus weight that agrees: the share of softmax(weight / temperature) over
the valid candidates (agent answers and memory hits) whose own answer decodes to the same text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.runner import check_run_dir, latest_checkpoint, load_checkpoint, save_checkpoint
from experiments.spec import ExperimentSpec, read_yaml, validate
from experiments.store import RunStore
from genome.errors import BadInput
from swarm.memory import Hits
from swarm.model import SwarmModel
from swarm.query import Response, learn, respond
from swarm.text_tasks import TASK_NAMES

MAX_QUESTION = 1000  # characters
ENCODINGS = "encodings.pt"  # on-disk cache of a slow encoder's embeddings, in the run directory
VOTES = ("up", "down")


def check_question(question: str) -> str:
    """The question, stripped; `BadInput` when it is empty or longer than `MAX_QUESTION`."""
    text = question.strip()
    if not text:
        raise BadInput("the question is empty")
    if len(text) > MAX_QUESTION:
        raise BadInput(f"the question has {len(text)} characters; at most {MAX_QUESTION} are allowed")
    return text


def load_swarm(run_dir: Path) -> tuple[SwarmModel, ExperimentSpec]:
    """The swarm of a `text_qa` run at its latest checkpoint, or `BadInput` saying what is missing."""
    run_dir = check_run_dir(run_dir)
    spec = validate(read_yaml(run_dir / "spec.yaml"))
    if spec.environment.name != "text_qa":
        raise BadInput(f"{run_dir} is a '{spec.environment.name}' run without text; ask a text_qa run "
                       "(for example one of experiments/configs/text_smoke.yaml)")
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise BadInput(f"{run_dir} has no checkpoint yet (checkpoints/step-*.pt)")
    model = SwarmModel(spec, seed=spec.run.seed)
    try:
        model.load_state_dict(load_checkpoint(checkpoint))
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise BadInput(f"checkpoint {checkpoint} does not match the run's spec ({err})") from None
    encoder = model.environment.encoder
    loaded = encoder.load(run_dir / ENCODINGS)
    model.environment.prepare()
    if encoder.raw.persistent and len(encoder.cache) > loaded:
        encoder.save(run_dir / ENCODINGS)
    return model, spec


@dataclass
class Asked:
    """One question's trip through the swarm, kept until its vote arrives."""

    question: str
    niche: int
    label: int  # decoded answer
    query: torch.Tensor  # (D,)
    agent_id: torch.Tensor  # (k,) the answering agents' ids (slots may be reused before the vote)
    responses: torch.Tensor  # (k, D)
    step: int


def answer(model: SwarmModel, questions: list[str]) -> tuple[list[dict[str, Any]], list[Asked]]:
    """Answer questions with the swarm; nothing in the swarm changes but its generator.

    Returns:
        One JSON-ready dict per question (answer, confidence, agents, memory hits), and the
        `Asked` records that `apply_vote` needs.
    """
    env = model.environment
    queries = env.encode(questions)  # (B, D)
    r = respond(model, queries)
    label = env.decode(r.answer)  # (B,)
    cand_label = env.decode(r.candidates)  # (B, n)
    share = _shares(model, r)  # (B, n)
    confidence = (share * (cand_label == label.unsqueeze(1))).sum(1)  # (B,)
    similarity = (r.answer * env.answers[label]).sum(-1)  # (B,)
    niche = env.nearest_niche(queries)  # (B,)
    table = model.agent_table()
    row_of = {a: j for j, a in enumerate(table["agent_id"].tolist())}
    ids = model._global("agent_id")[r.chosen]  # (B, k)
    k = r.chosen.shape[1]
    ancestors, generation = _lineage(model, ids.flatten())
    ancestors, generation = ancestors.view(len(questions), k, -1), generation.view(len(questions), k)
    out, asked = [], []
    for i, q in enumerate(questions):
        known = env.known(q)
        out.append({
            "question": q,
            "answer": env.answer_texts[int(label[i])],
            "confidence": round(float(confidence[i]), 4),
            "similarity": round(float(similarity[i]), 4),
            "niche": TASK_NAMES[int(niche[i])],
            "expected": env.answer_texts[known[1]] if known else None,
            "agents": _agents(model, ids[i], r, i, cand_label[i, :k], share[i, :k], env, table, row_of,
                              ancestors[i], generation[i]),
            "memory_hits": _hits(r.hits, i, cand_label[i, k:], share[i, k:], env),
            "step": int(model.steps),
        })
        asked.append(Asked(q, int(niche[i]), int(label[i]), queries[i], ids[i].clone(),
                           r.responses[i].clone(), int(model.steps)))
    return out, asked


def _shares(model: SwarmModel, r: Response) -> torch.Tensor:
    """(B, n) each valid candidate's share of the consensus: softmax(weight / T), uniform for robust rules."""
    p = model.spec.consensus
    if p.rule == "weighted_mean":
        logits = (r.weight / p.temperature).masked_fill(~r.valid, float("-inf"))
        return torch.softmax(logits, 1).nan_to_num(0.0)
    return r.valid.float() / r.valid.sum(1, keepdim=True).clamp_min(1)


def _lineage(model: SwarmModel, agent_id: torch.Tensor, depth: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestry of agents from the lineage log, walked for all of them at once.

    Args:
        agent_id: (M,) agent ids.

    Returns:
        (M, depth) nearest ancestors, parent first (-1 past the founder), and (M,) generation:
        how many ancestors each agent has back to its founder.
    """
    births = model.lineage.births  # (n, 5): id, parent, root, colony, step
    parent_of = torch.full((int(births[:, 0].max()) + 1,), -1, dtype=torch.int64)
    parent_of[births[:, 0]] = births[:, 1]
    ancestors = torch.full((len(agent_id), depth), -1, dtype=torch.int64)
    generation = torch.zeros(len(agent_id), dtype=torch.int64)
    node = agent_id.clone()
    level = 0
    while bool((node >= 0).any()):
        node = torch.where(node >= 0, parent_of[node.clamp_min(0)], node)
        generation += node >= 0
        if level < depth:
            ancestors[:, level] = node
        level += 1
    return ancestors, generation


def _agents(model, ids, r, i, labels, shares, env, table, row_of, ancestors, generation) -> list[dict[str, Any]]:
    agents = []
    for slot, agent_id in enumerate(ids.tolist()):
        j = row_of[agent_id]
        agents.append({
            "agent_id": agent_id,
            "colony": int(table["colony"][j]),
            "fitness": round(float(table["fitness"][j]), 4),
            "parent_id": int(table["parent_id"][j]),
            "root_id": int(table["root_id"][j]),
            "birth_step": int(table["birth_step"][j]),
            "generation": int(generation[slot]),
            "ancestors": [a for a in ancestors[slot].tolist() if a >= 0],
            "routed": bool(r.routed[i, slot]),
            "answer": env.answer_texts[int(labels[slot])],
            "weight": round(float(shares[slot]), 4),
        })
    return agents


def _hits(hits: Hits, i: int, labels: torch.Tensor, shares: torch.Tensor, env) -> list[dict[str, Any]]:
    return [{
        "agent_id": int(hits.agent_id[i, j]),
        "answer": env.answer_texts[int(labels[j])],
        "similarity": round(float(hits.similarity[i, j]), 4),
        "fitness": round(float(hits.fitness[i, j]), 4),
        "weight": round(float(shares[j]), 4),
    } for j in range(hits.valid.shape[1]) if bool(hits.valid[i, j])]


def apply_vote(model: SwarmModel, asked: Asked, vote: str) -> dict[str, Any]:
    """Turn a person's vote on one answer into fitness, as one simulation step of one query.

    Up: the decoded answer is the target; every agent that answered (and is still alive) is
    rewarded by the environment's graded feedback against it, and the best agent answer is stored
    in the shared memory. Down: rewards are the negative of that feedback, so the agents that gave
    the rejected answer lose fitness and the others barely change, and stored answers for similar
    questions that give the rejected answer are demoted. Then the step's divisions run.

    Returns:
        The step's metrics (the columns a simulation step writes that make sense for one vote),
        births and deaths.
    """
    if vote not in VOTES:
        raise BadInput(f"vote must be up or down, got {vote!r}")
    env = model.environment
    slots = model._locate(asked.agent_id)  # (k,) -1 where the agent died since it answered
    alive = slots >= 0
    model.steps += 1
    step = model.steps
    rewards = torch.zeros(0)
    if bool(alive.any()):
        target = env.answers[asked.label]  # (D,)
        responses = asked.responses[alive].unsqueeze(0)  # (1, k', D)
        rewards = env.feedback(responses, target.view(1, 1, -1))  # (1, k')
        if vote == "down":
            rewards = -rewards
        r = Response(queries=asked.query.unsqueeze(0), hits=None, chosen=slots[alive].unsqueeze(0),
                     routed=None, responses=responses, weight=None, valid=None, answer=None)
        learn(model, r, rewards, torch.tensor([asked.niche]), step)
    demoted = _demote_memory(model, asked) if vote == "down" else 0
    births, died = model.reproduce(step)
    model.totals["queries"] += 1
    fitness = model._global("fitness")[model._global("alive")]
    metrics = {
        "population": float(len(fitness)),
        "births": float(len(births.agent_id)),
        "deaths": float(len(died)),
        "queries": 1.0,
        "fitness_mean": float(fitness.mean()) if len(fitness) else 0.0,
        "fitness_max": float(fitness.max()) if len(fitness) else 0.0,
        "agent_quality": float(rewards.mean()) if rewards.numel() else 0.0,
        "thumbs_up": 1.0 if vote == "up" else 0.0,
        "memory_entries": float(model.memory.size),
    }
    return {"step": step, "metrics": metrics, "births": births, "deaths": died, "memory_demoted": demoted,
            "rewards": [round(v, 4) for v in rewards.flatten().tolist()]}


def _demote_memory(model: SwarmModel, asked: Asked) -> int:
    """After a down vote: stored answers for similar questions that give the rejected answer turn negative.

    Their fitness becomes -|fitness|, so lookup ranks them last, consensus weighs them down and
    garbage collection evicts them first. Returns how many entries were demoted.
    """
    mem, env = model.memory, model.environment
    near = (mem.valid & ((mem.query @ asked.query) >= mem.p.min_similarity)).nonzero().squeeze(1)  # (n,)
    wrong = near[env.decode(mem.response[near]) == asked.label]
    mem.fitness[wrong] = -mem.fitness[wrong].abs()
    return len(wrong)


def record_vote(store: RunStore, asked: Asked, vote: str, applied: dict[str, Any], ask_id: str,
                answer_text: str) -> None:
    """Write an applied vote to the run store: the step's row, births, deaths and a feedback event."""
    b = applied["births"]
    step = applied["step"]
    store.write_step(
        step, applied["metrics"],
        births=list(zip(b.agent_id.tolist(), b.parent_id.tolist(), b.root_id.tolist(), b.colony.tolist())),
        deaths=applied["deaths"].tolist(),
    )
    store.event(step, "feedback", {
        "id": ask_id, "vote": vote, "question": asked.question, "answer": answer_text,
        "asked_step": asked.step, "agents": asked.agent_id.tolist(), "rewards": applied["rewards"],
        "memory_demoted": applied["memory_demoted"],
        "time": time.time(),
    })


def ask_run(run_dir: Path, question: str, vote: str | None = None) -> dict[str, Any]:
    """`cogitans ask`: answer one question from a run's latest checkpoint, optionally apply a vote.

    With a vote the run changes as a step would change it: the vote is recorded in the run store
    and a new checkpoint is written.
    """
    question = check_question(question)
    if vote is not None and vote not in VOTES:
        raise BadInput(f"--feedback must be up or down, got '{vote}'")
    model, spec = load_swarm(run_dir)
    torch.set_num_threads(spec.run.threads or 1)  # one question: more threads only contend
    results, asked = answer(model, [question])
    result = results[0]
    if vote is not None:
        applied = apply_vote(model, asked[0], vote)
        store = RunStore(Path(run_dir) / "run.sqlite")
        try:
            record_vote(store, asked[0], vote, applied, f"cli-{applied['step']}", result["answer"])
        finally:
            store.close()
        save_checkpoint(run_dir, model)
        result["feedback"] = {"vote": vote, "step": applied["step"], "rewards": applied["rewards"],
                              "memory_demoted": applied["memory_demoted"],
                              "births": len(applied["births"].agent_id), "deaths": len(applied["deaths"])}
    return result


def describe(result: dict[str, Any]) -> str:
    """A readable, few-line rendering of one `answer` result."""
    lines = [(f"answer: {result['answer']}   (confidence {result['confidence']:.2f}, "
              f"similarity {result['similarity']:.2f}, niche {result['niche']})")]
    if result["expected"] is not None:
        verdict = "right" if result["expected"] == result["answer"] else f"wrong, expected {result['expected']}"
        lines[0] += f"   [{verdict}]"
    lines.append("agents:")
    for a in result["agents"]:
        lines.append(f"  #{a['agent_id']:<6} colony {a['colony']}  fitness {a['fitness']:+.3f}  "
                     f"generation {a['generation']}  parent {a['parent_id']}  root {a['root_id']}  "
                     f"weight {a['weight']:.2f}  says {a['answer']}{'  (routed)' if a['routed'] else ''}")
    lines.append(f"memory hits: {len(result['memory_hits'])}")
    for h in result["memory_hits"]:
        lines.append(f"  by #{h['agent_id']:<6} similarity {h['similarity']:.2f}  fitness {h['fitness']:+.3f}  "
                     f"weight {h['weight']:.2f}  says {h['answer']}")
    if "feedback" in result:
        f = result["feedback"]
        lines.append(f"feedback {f['vote']} stored at step {f['step']} (rewards {f['rewards']}, "
                     f"{f['births']} births, {f['deaths']} deaths)")
    return "\n".join(lines)
