"""Evolution against a control without variation or selection (sigma = 0, s = 0).

The same small spec runs twice per seed; quality is the mean consensus similarity to the target
over the first or last 10% of steps. Margins were chosen from measured runs (see README).
"""

from __future__ import annotations

from statistics import mean

import pytest

from experiments.spec import validate
from swarm.model import SwarmModel
from tests.conftest import SMALL

STEPS = 400
SEEDS = (0, 1)


def summary(overrides: dict, seed: int) -> dict[str, float]:
    data = {**SMALL, **overrides}
    model = SwarmModel(validate(data), seed=seed)
    quality, spec_index = [], 0.0
    for _ in range(STEPS):
        model.step()
        quality.append(model.metrics["quality"])
        spec_index = model.metrics["specialization"]
    tenth = STEPS // 10
    return {"first": mean(quality[:tenth]), "last": mean(quality[-tenth:]), "specialization": spec_index}


@pytest.fixture(scope="module")
def results():
    control = {"mutation": {"sigma": 0.0}, "selection": {"pressure": 0.0}}
    return {
        "evolution": [summary({}, s) for s in SEEDS],
        "control": [summary(control, s) for s in SEEDS],
    }


def test_quality_rises_with_evolution(results):
    evo = results["evolution"]
    assert mean(r["last"] for r in evo) > mean(r["first"] for r in evo) + 0.03


def test_evolution_beats_the_control(results):
    evo, ctrl = results["evolution"], results["control"]
    print({name: [{k: round(v, 3) for k, v in r.items()} for r in rows] for name, rows in results.items()})
    assert mean(r["last"] for r in evo) > mean(r["last"] for r in ctrl) + 0.025
    assert mean(r["specialization"] for r in evo) > mean(r["specialization"] for r in ctrl) + 0.08
