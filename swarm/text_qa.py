"""`text_qa`: real text questions, encoded by a sentence encoder, answered from a bank of answers.

Niches are the first K tasks of `swarm.text_tasks.TASKS` (capitals, sums, unit conversions,
opposites, ...). Each task draws `facts_per_niche` facts (all when 0) and phrases each fact with
five templates; for every fact `holdout` of its templates, chosen at random per fact, are held
out: those questions are never asked during a run and serve to evaluate (`held_out`). Every
template is still seen in training with other facts.

Queries are encoded questions; the answer bank is the distinct encoded answers; a response is
decoded to the nearest answer of the bank. Feedback is graded:
reward = w [decoded answer is right] + (1 - w) cos(response, right answer), w = correct_weight.
The niche mix drifts (or shifts) exactly as in the `niches` environment.

The data set and its split depend on `text.dataset_seed` only (their own generator), never on the
run's seed; the run's generator draws only the questions asked. Encoding is lazy: nothing is
encoded before the first use, so a caller can first load an on-disk cache into `encoder`.
"""

from __future__ import annotations

import torch
from torch.nn.functional import normalize

from swarm.encoders import TextEncoder, clean
from swarm.environment import NicheEnvironment, QueryBatch
from swarm.params import EnvironmentParams
from swarm.text_tasks import TASKS, question


class TextQAEnvironment:
    """Question-answer niches over real text; the interface of `NicheEnvironment`."""

    mix = NicheEnvironment.mix  # the same drift and shift of the niche mix

    def __init__(self, params: EnvironmentParams, dim: int, gen: torch.Generator | None = None):
        self.p, t = params, params.text
        self.dim = dim
        data_gen = torch.Generator().manual_seed(t.dataset_seed)
        answers: dict[str, int] = {}
        train: list[tuple[str, int, int]] = []  # (question, niche, answer index)
        held: list[tuple[str, int, int]] = []
        for niche, task in enumerate(TASKS[: params.niches]):
            n_facts = len(task.facts) if t.facts_per_niche == 0 else min(t.facts_per_niche, len(task.facts))
            facts = torch.randperm(len(task.facts), generator=data_gen)[:n_facts].sort().values
            for f in facts.tolist():
                label = answers.setdefault(task.facts[f][1], len(answers))
                order = torch.randperm(len(task.templates), generator=data_gen).tolist()
                for rank, tpl in enumerate(order):
                    (held if rank < t.holdout else train).append((question(task, tpl, f), niche, label))
        self.answer_texts: list[str] = list(answers)
        self.train_texts = [q for q, _, _ in train]
        self.held_texts = [q for q, _, _ in held]
        self.train_niche = torch.tensor([n for _, n, _ in train])  # (Q,)
        self.train_label = torch.tensor([a for _, _, a in train])  # (Q,)
        self.held_niche = torch.tensor([n for _, n, _ in held], dtype=torch.int64)
        self.held_label = torch.tensor([a for _, _, a in held], dtype=torch.int64)
        self.sizes = torch.bincount(self.train_niche, minlength=params.niches)  # (K,) questions per niche
        self.table = torch.zeros(params.niches, int(self.sizes.max()), dtype=torch.int64)  # (K, Qmax)
        self.table[self.train_niche, torch.arange(len(train)) - (self.sizes.cumsum(0) - self.sizes)[self.train_niche]] = \
            torch.arange(len(train))
        self._known = {_key(q): (n, a) for q, n, a in train + held}
        self.encoder = TextEncoder(t.encoder, dim, t.width, t.align)
        self._questions: torch.Tensor | None = None  # (Q, D) encoded training questions
        self._answers: torch.Tensor | None = None  # (A, D) the answer bank

    # ---- encoding --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Fit the alignment on training questions and answers, encode them (once)."""
        if self._answers is None:
            self.encoder.fit(self.train_texts + self.answer_texts)
            self._questions = self.encoder.encode(self.train_texts)
            self._answers = self.encoder.encode(self.answer_texts)

    @property
    def answers(self) -> torch.Tensor:
        """(A, D) the encoded answer bank."""
        self.prepare()
        return self._answers

    @property
    def questions(self) -> torch.Tensor:
        """(Q, D) the encoded training questions."""
        self.prepare()
        return self._questions

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, D) unit query embeddings of any texts."""
        self.prepare()
        return self.encoder.encode(texts)

    # ---- the environment interface ---------------------------------------------------------
    def sample(self, step: int, gen: torch.Generator, batch: int | None = None) -> QueryBatch:
        b = self.p.batch if batch is None else batch
        niche = torch.multinomial(self.mix(step), b, replacement=True, generator=gen)  # (B,)
        pick = (torch.rand(b, generator=gen) * self.sizes[niche]).long()  # (B,) rank inside the niche
        index = self.table[niche, pick]  # (B,) training question
        label = self.train_label[index]
        return QueryBatch(queries=self.questions[index], niche=niche, label=label, target=self.answers[label])

    def decode(self, responses: torch.Tensor) -> torch.Tensor:
        """(..., D) responses -> (...,) index of the nearest answer in the bank."""
        return (normalize(responses, dim=-1) @ self.answers.T).argmax(-1)

    def feedback(self, responses: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Graded reward in [-1, 1]: w [decoded == decoded target] + (1 - w) cosine; shape (...,)."""
        w = self.p.text.correct_weight
        cosine = (normalize(responses, dim=-1) * target).sum(-1)
        right = (self.decode(responses) == self.decode(target)).float()
        return w * right + (1.0 - w) * cosine

    # ---- evaluation and people's questions --------------------------------------------------
    def held_out(self) -> QueryBatch:
        """Every held-out question (never asked during a run), with its niche and answer."""
        queries = self.encode(self.held_texts) if self.held_texts else torch.zeros(0, self.dim)
        return QueryBatch(queries=queries, niche=self.held_niche, label=self.held_label,
                          target=self.answers[self.held_label])

    def known(self, text: str) -> tuple[int, int] | None:
        """(niche, answer index) when `text` is one of the data set's questions, else None."""
        return self._known.get(_key(text))

    def nearest_niche(self, queries: torch.Tensor) -> torch.Tensor:
        """(B,) niche of the most similar training question: where a person's question belongs."""
        return self.train_niche[(queries @ self.questions.T).argmax(-1)]

    def most_frequent_answer(self) -> int:
        """Index of the answer that the most training questions have."""
        return int(torch.bincount(self.train_label, minlength=len(self.answer_texts)).argmax())


def _key(text: str) -> str:
    return " ".join(clean(text).lower().split())


def evaluate(model, batch: QueryBatch | None = None) -> dict[str, float]:
    """Accuracy of a swarm on held-out questions (or `batch`), without changing the swarm.

    The generator's state is restored afterwards, so evaluating never changes what a run does.

    Returns:
        accuracy: share of questions whose consensus answer decodes to the right answer.
        agent_accuracy: the same with the consensus over agent answers only (memory hits left out).
        memory_hit_rate: share of questions with at least one memory hit.
        most_frequent: accuracy of always answering the bank's most frequent training answer.
        questions: how many questions were asked.
    """
    from swarm import consensus
    from swarm.query import respond

    env = model.environment
    batch = env.held_out() if batch is None else batch
    if len(batch.label) == 0:
        raise ValueError("no questions to evaluate: set environment.text.holdout >= 1")
    state = model.gen.get_state()
    try:
        r = respond(model, batch.queries)
    finally:
        model.gen.set_state(state)
    k = r.chosen.shape[1]
    agents_only = r.valid.clone()
    agents_only[:, k:] = False
    rule = consensus.REGISTRY[model.spec.consensus.rule]
    agent_answer = rule(r.candidates, r.weight, agents_only, model.spec.consensus)
    return {
        "accuracy": float((env.decode(r.answer) == batch.label).float().mean()),
        "agent_accuracy": float((env.decode(agent_answer) == batch.label).float().mean()),
        "memory_hit_rate": float(r.hits.valid.any(1).float().mean()),
        "most_frequent": float((batch.label == env.most_frequent_answer()).float().mean()),
        "questions": float(len(batch.label)),
    }
