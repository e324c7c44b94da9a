"""Run one claim experiment and write its report: report.md, table.csv and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.claims import REGISTRY
from experiments.claims.common import markdown
from genome.errors import BadInput


def run(name: str, quick: bool, out: Path) -> dict[str, Any]:
    if name not in REGISTRY:
        raise BadInput(f"unknown experiment '{name}' (available: {', '.join(sorted(REGISTRY))})")
    from experiments.runner import new_run_dir

    result = REGISTRY[name](quick)
    folder = new_run_dir(out, f"claim-{name}" + ("-quick" if quick else ""))
    result.table.to_csv(folder / "table.csv", index=False)
    images = []
    for stem, fig in result.figures.items():
        try:
            fig.write_image(folder / f"{stem}.png", scale=1)
            images.append(f"![{stem}]({stem}.png)")
        except Exception as err:  # kaleido needs a Chromium; keep an interactive HTML instead
            fig.write_html(folder / f"{stem}.html", include_plotlyjs="cdn")
            images.append(f"[{stem}]({stem}.html) (PNG export unavailable: {type(err).__name__})")
    text = "\n\n".join([f"# {result.title}", f"**Claim (source):** {result.claim}",
                        f"**Result{' (quick variant)' if quick else ''}:** {result.verdict}",
                        markdown(result.table), *images, result.notes]).strip() + "\n"
    (folder / "report.md").write_text(text)
    return {"experiment": name, "quick": quick, "report": str(folder / "report.md"), "held": result.held,
            "verdict": result.verdict, "table": result.table.to_dict("records")}
