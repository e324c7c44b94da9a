"""Claims about the swarm (source: the replicating swarm, system 1): specialisation, starvation of
malicious agents, the mutation error threshold, and the replication threshold's trade-off."""

from __future__ import annotations

import math
from statistics import mean, stdev

import pandas as pd
import plotly.graph_objects as go

from experiments.claims.common import SMALL, ClaimResult, merge, tail_mean, trajectory


def _base(quick: bool) -> tuple[dict, int, list[int]]:
    """Spec, steps and seeds: the small spec (about 30 ms a step) for 200 steps x 2 seeds with
    --quick, 600 steps x 3 seeds otherwise."""
    return (SMALL, 200, [0, 1]) if quick else (SMALL, 600, [0, 1, 2])


def _ci(values: list[float]) -> float:
    return 1.96 * stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def _lines(runs: dict[str, list[pd.DataFrame]], column: str, title: str, ytitle: str, smooth: int = 10) -> go.Figure:
    """The seed mean of `column` per step, one line per run name, smoothed over `smooth` steps."""
    fig = go.Figure()
    for name, dfs in runs.items():
        avg = pd.concat(dfs).groupby("step")[column].mean().rolling(smooth, min_periods=1).mean()
        fig.add_trace(go.Scatter(x=avg.index, y=avg.values, name=name, mode="lines"))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=ytitle, template="plotly_white",
                      width=800, height=450)
    return fig


def specialisation(quick: bool) -> ClaimResult:
    base, steps, seeds = _base(quick)
    variants = {
        "evolution": {},
        "no selection (sigma=0, s=0)": {"mutation": {"sigma": 0.0}, "selection": {"pressure": 0.0}},
        "no memory routing": {"gossip": {"routed_fraction": 0.0}},
    }
    runs = {name: [trajectory(merge(base, o), s, steps) for s in seeds] for name, o in variants.items()}
    rows = []
    for name, dfs in runs.items():
        spec_end = [float(df["specialization"].iloc[-1]) for df in dfs]
        quality = [tail_mean(df, "quality") for df in dfs]
        rows.append({"variant": name, "specialization": mean(spec_end), "specialization_ci95": _ci(spec_end),
                     "quality_last": mean(quality), "quality_ci95": _ci(quality)})
    table = pd.DataFrame(rows)
    evo = table["specialization"].iloc[0]
    held = bool(evo > table["specialization"].iloc[1:].max())
    verdict = (f"Held: with evolution the specialisation index ends at {evo:.2f}, against "
               f"{table['specialization'].iloc[1]:.2f} without selection and {table['specialization'].iloc[2]:.2f} "
               "without memory routing." if held else
               f"Did not hold: evolution ends at {evo:.2f}, not above both controls.")
    return ClaimResult(
        "Specialisation into niches",
        "Agents that answer a kind of query well replicate and dominate that niche.",
        verdict, held, table,
        {"specialisation": _lines(runs, "specialization", "Specialisation index over time",
                                  "specialisation index (0 generalists, 1 one niche each)")},
    )


STARVATION_RULES = ("mean", "weighted_mean", "median", "trimmed_mean")


def starvation(quick: bool) -> ClaimResult:
    """Malicious agents (answers pushed away from the target, environment.malicious_scale long) as a
    share of the founders, and as a third of a trained swarm turned malicious half way through.

    Every rule is measured on the same runs (`trajectory(..., rules)`): the rule does not feed back
    into the run. Quality is compared with a clean run of the same seed in two windows: from the
    malicious agents' appearance until their share halves, and from their appearance to the end.
    """
    base, steps, _ = _base(quick)
    steps, seeds = (120 if quick else steps), [0, 1, 2]  # 3 seeds in the quick variant too: the windows are short
    base = merge(base, {"consensus": {"trim": 0.34}})  # the trimmed mean drops a third at each end
    onset = steps // 2  # compromised agents appear at this step, in a swarm that has learned
    variants = (("founders", 0.1, 0), ("founders", 0.33, 0), (f"step {onset}", 0.33, onset))
    rules = STARVATION_RULES
    clean = [trajectory(base, s, steps, rules) for s in seeds]
    runs, rows, ratios = {}, [], {}
    for appear, share, at in variants:
        env = {**base.get("environment", {}), "malicious": share, "malicious_step": at}
        dfs = [trajectory(merge(base, {"environment": env}), s, steps, rules) for s in seeds]
        runs[f"{share:.0%} malicious, {appear}"] = dfs
        first = max(at - 1, 0)  # row of the step they appear in
        ends = [_first_below(df, share / 2, first) for df in dfs]  # rows where their share has halved
        for rule in rules:
            col = f"quality_{rule}"
            window = _ratio(dfs, clean, col, [(first, max(e, first + 1)) for e in ends])
            after = _ratio(dfs, clean, col, [(first, steps)] * len(dfs))
            ratios[(appear, share, rule)] = (window, after)
            rows.append({
                "malicious": share, "appear": appear, "rule": rule,
                "malicious_share_end": mean(float(df["malicious_share"].iloc[-1]) for df in dfs),
                "steps_to_half": mean(e - first for e in ends),
                "quality_window_vs_clean": window, "quality_run_vs_clean": after,
                "quality_last": mean(tail_mean(df, col) for df in dfs),
            })
    table = pd.DataFrame(rows)
    held = bool((table["malicious_share_end"] < table["malicious"] / 2).all())

    def per_rule(appear: str) -> str:
        return ", ".join(f"{r} {ratios[(appear, 0.33, r)][0]:.2f} ({ratios[(appear, 0.33, r)][1]:.2f})" for r in rules)

    compromised = f"step {onset}"
    verdict = ("Held: in every run the malicious agents' share fell below half its start "
               f"(end shares {', '.join(f'{v:.2f}' for v in table['malicious_share_end'].iloc[::len(rules)])})."
               if held else "Did not hold: some malicious populations kept more than half their share.")
    verdict += (f" Consensus quality against a clean run of the same seed, from their appearance until their share "
                f"halved (and to the end of the run): when a third of the trained swarm turns malicious at step "
                f"{onset}: {per_rule(compromised)}; as 33% of the founders: {per_rule('founders')}.")
    notes = ("Robust rules bound how far a minority can pull the consensus by the spread of the honest answers. "
             "In a trained swarm the honest answers agree and the median and trimmed mean hold; at the start of a "
             "run they barely agree (cosine about 0.2 to the target), so no rule holds until selection has "
             "removed the malicious founders. consensus.trim is 0.34 here (a third trimmed at each end).")
    return ClaimResult("Malicious agents starve", "Low-fitness agents are outcompeted; malicious agents are starved.",
                       verdict, held, table,
                       {"starvation": _lines(runs, "malicious_share", "Share of malicious agents (every rule: the rule "
                                             "does not change the run)", "malicious share of the population", smooth=1),
                        "starvation_quality": _quality_dip(runs[f"33% malicious, {compromised}"], clean, rules, onset)},
                       notes)


def _first_below(df: pd.DataFrame, level: float, first: int = 0) -> int:
    """First row at or after `first` whose malicious share is under `level` (len(df) if none)."""
    below = [i for i in df.index[df["malicious_share"] < level] if i >= first]
    return int(below[0]) if below else len(df)


def _ratio(dfs: list[pd.DataFrame], clean: list[pd.DataFrame], column: str, spans: list[tuple[int, int]]) -> float:
    """Seed-averaged `column` over each run's rows [a, b), over the same rows of its clean run."""
    bad = mean(float(df[column].iloc[a:b].mean()) for df, (a, b) in zip(dfs, spans))
    ref = mean(float(df[column].iloc[a:b].mean()) for df, (a, b) in zip(clean, spans))
    return bad / ref


def _quality_dip(dfs: list[pd.DataFrame], clean: list[pd.DataFrame], rules: tuple[str, ...], onset: int) -> go.Figure:
    fig = go.Figure()
    for rule in rules:
        bad = pd.concat(dfs).groupby("step")[f"quality_{rule}"].mean()
        ref = pd.concat(clean).groupby("step")[f"quality_{rule}"].mean()
        ratio = (bad / ref).loc[onset - 10: onset + 40]
        fig.add_trace(go.Scatter(x=ratio.index, y=ratio.values, name=rule, mode="lines+markers"))
    fig.add_vline(x=onset, line_dash="dash")
    fig.update_layout(title=f"Consensus quality over a clean run's; a third of the swarm turns malicious at step {onset}",
                      xaxis_title="step", yaxis_title="quality / clean quality (seed means)", template="plotly_white",
                      width=800, height=450)
    return fig


def mutation_sweep(quick: bool) -> ClaimResult:
    base, steps, seeds = _base(quick)
    sigmas = [0.01, 0.1, 1.0] if quick else [0.01, 0.03, 0.1, 0.3, 1.0]  # two decades
    rows = []
    for sigma in sigmas:
        dfs = [trajectory(merge(base, {"mutation": {"sigma": sigma}}), s, steps) for s in seeds]
        q = [tail_mean(df, "quality") for df in dfs]
        a = [tail_mean(df, "agent_quality") for df in dfs]
        rows.append({"sigma": sigma, "quality_last": mean(q), "quality_ci95": _ci(q),
                     "agent_quality_last": mean(a), "agent_quality_ci95": _ci(a), "seeds": len(q)})
    table = pd.DataFrame(rows)
    fig = go.Figure()
    for col, name in (("quality_last", "consensus (agents + memory)"), ("agent_quality_last", "agents' own answers")):
        fig.add_trace(go.Scatter(x=table["sigma"], y=table[col], mode="lines+markers", name=name,
                                 error_y={"type": "data", "array": table[col.replace("last", "ci95")].fillna(0)}))
    fig.update_layout(title="Answer quality against mutation strength", xaxis_type="log",
                      xaxis_title="mutation sigma (std of weight noise)", yaxis_title="cosine to target, last 10% of steps",
                      template="plotly_white", width=800, height=450)
    peak = int(table["agent_quality_last"].idxmax())
    held = bool(peak < len(table) - 1)  # agents' heritable quality falls past some sigma
    verdict = (f"Agents' own answers are best at sigma = {table['sigma'].iloc[peak]:g} "
               + (f"and fall at sigma = {table['sigma'].iloc[-1]:g} (an error threshold in what children inherit), "
                  if held else "and do not fall within two decades (no error threshold seen), ")
               + f"while consensus quality keeps rising to {table['quality_last'].iloc[-1]:.2f}: the shared memory "
               "keeps the best answers ever given, so the swarm is buffered against mutational meltdown. The "
               "source's sigma = 0.01 is on the slow side for these 100k-parameter agents.")
    return ClaimResult("Mutation strength (error threshold)", "sigma = 0.01 makes small changes to weights.",
                       verdict, held, table, {"mutation_sweep": fig})


def threshold_sweep(quick: bool) -> ClaimResult:
    base, steps, seeds = _base(quick)
    shift = steps // 2
    thresholds = [5, 20, 80] if quick else [10, 20, 40, 80, 160]
    rows, runs = [], {}
    for r in thresholds:
        o = {"replication": {"threshold": r}, "environment": {**base.get("environment", {}), "shift_step": shift}}
        dfs = [trajectory(merge(base, o), s, steps) for s in seeds]
        runs[f"R = {r}"] = dfs
        rows.append({"threshold": r,
                     "lineages_at_shift": mean(float(df["lineages"].iloc[shift - 1]) for df in dfs),
                     "quality_before_shift": mean(float(df["quality"].iloc[shift - 50 : shift].mean()) for df in dfs),
                     "quality_after_shift_100": mean(float(df["quality"].iloc[shift : shift + 100].mean()) for df in dfs),
                     "quality_last": mean(tail_mean(df, "quality") for df in dfs),
                     "births": mean(float(df["births"].sum()) for df in dfs)})
    table = pd.DataFrame(rows)
    fig = _lines(runs, "quality", f"Consensus quality; the query mix shifts at step {shift}", "quality (cosine to target)")
    fig.add_vline(x=shift, line_dash="dash")
    before, after = int(table["quality_before_shift"].idxmax()), int(table["quality_after_shift_100"].idxmax())
    held = before < after  # a trade-off: the best threshold before the shift is not the best after it
    r = table["threshold"]
    verdict = (f"Before the shift the best quality comes with R = {r.iloc[before]} "
               f"({table['quality_before_shift'].iloc[before]:.2f}); in the 100 steps after it with "
               f"R = {r.iloc[after]} ({table['quality_after_shift_100'].iloc[after]:.2f}). "
               + ("The trade-off holds, but not as 'faster division adapts faster': fast division lets a few "
                  "lineages take over (lineages at the shift: "
                  f"{', '.join(f'{v:.0f}' for v in table['lineages_at_shift'])} for R = "
                  f"{', '.join(str(v) for v in r)}), which exploits the current mix and leaves less variety "
                  "when the mix moves." if held else "No trade-off seen: the same threshold is best on both sides."))
    return ClaimResult("Replication threshold vs adaptation",
                       "The replication threshold R balances stability against adaptation.",
                       verdict, held, table, {"threshold_sweep": fig})
