"""Asymmetric gene transfer: graft a donor's circuit into a frozen recipient, then integrate it.

1. Graft. Each recipient site (an `nn.Linear`) takes the donor's weights. When widths differ the
   site becomes `Grafted`: P_out(donor(P_in(x))), where P_in maps the recipient's inputs at the
   site to the donor's and P_out the donor's outputs to the recipient's; both are least-squares
   fits (`genome.align.fit_projection`) on probe inputs run through both models, then trained.
2. Freeze. Every recipient parameter outside the graft sites is frozen.
3. Integrate. Adam on task loss + lambda * EWC, where EWC = sum_i F_i (theta_i - theta*_i)^2 over
   the sites' effective weights (a `Grafted` site's P_out W P_in has the recipient's shape),
   theta* the recipient's own weights, F the diagonal Fisher information of the recipient's
   original behaviour (squared gradients of the log-likelihood of its own predictions on the
   preservation inputs), scaled to mean 1 so lambda is comparable across models.
4. Verify. Task metric before and after on the evaluation data; how far the original behaviour
   moved: the share of preservation inputs whose prediction changed (`disagreement`, checked
   against `bound`) and the relative change of the outputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genome.align import fit_projection
from genome.recombine.homology import activations


class Grafted(nn.Module):
    """A donor linear layer between two learned projections: x -> P_out(W (P_in x))."""

    def __init__(self, p_in: nn.Linear, core: nn.Linear, p_out: nn.Linear) -> None:
        super().__init__()
        self.p_in, self.core, self.p_out = p_in, core, p_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.p_out(self.core(self.p_in(x)))

    def effective(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent single layer: weight (out_r, in_r), bias (out_r,)."""
        w = self.p_out.weight @ self.core.weight @ self.p_in.weight
        b = self.p_out.weight @ (self.core.weight @ self.p_in.bias + self.core.bias) + self.p_out.bias
        return w, b


@dataclass
class TransferReport:
    """Outcome of one transfer; `model` is the new recipient (the inputs are never changed)."""

    model: nn.Module
    sites: list[str]
    projected: list[str]
    task_before: float
    task_after: float
    disagreement: float
    output_drift: float
    bound: float
    lam: float
    steps: int

    @property
    def task_gain(self) -> float:
        return self.task_after - self.task_before

    @property
    def within_bound(self) -> bool:
        return self.disagreement <= self.bound

    def summary(self) -> dict[str, float | bool | list[str]]:
        return {"sites": self.sites, "projected": self.projected, "task_before": self.task_before,
                "task_after": self.task_after, "task_gain": self.task_gain, "disagreement": self.disagreement,
                "output_drift": self.output_drift, "bound": self.bound, "within_bound": self.within_bound,
                "lam": self.lam, "steps": self.steps}


def _linear(model: nn.Module, name: str, who: str) -> nn.Linear:
    module = dict(model.named_modules()).get(name)
    if not isinstance(module, nn.Linear):
        raise TypeError(f"{who} site {name!r} must be an nn.Linear, got {type(module).__name__}")
    return module


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _site_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return module.effective() if isinstance(module, Grafted) else (module.weight, module.bias)


def fisher(model: nn.Module, sites: list[str], x: torch.Tensor, samples: int = 64) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of each site's (weight, bias) under the model's own predictions, mean 1."""
    params = {s: _linear(model, s, "recipient") for s in sites}
    total = {f"{s}.{k}": torch.zeros_like(getattr(m, k)) for s, m in params.items() for k in ("weight", "bias")}
    tensors = [getattr(m, k) for m in params.values() for k in ("weight", "bias")]
    for t in tensors:
        t.requires_grad_(True)
    model.eval()
    for i in range(min(samples, len(x))):  # per-sample gradients: a short loop over probes
        logp = F.log_softmax(model(x[i: i + 1]), dim=-1)
        grads = torch.autograd.grad(logp[0, logp[0].argmax()], tensors, allow_unused=True)
        for key, g in zip(total, grads):
            if g is not None:
                total[key] += g.detach().square()
    scale = torch.cat([t.flatten() for t in total.values()]).mean().clamp_min(1e-12)
    return {k: v / scale for k, v in total.items()}


def transfer(recipient: nn.Module, donor: nn.Module, sites: Mapping[str, str], task_x: torch.Tensor,
             task_y: torch.Tensor, preserve_x: torch.Tensor, *,
             task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
             metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
             behaviour: Callable[[torch.Tensor], torch.Tensor] | None = None,
             eval_x: torch.Tensor | None = None, eval_y: torch.Tensor | None = None,
             lam: float = 10.0, steps: int = 200, lr: float = 1e-2, bound: float = 0.1,
             seed: int = 0) -> TransferReport:
    """Graft `donor`'s sites into a copy of `recipient` and integrate them.

    Args:
        recipient, donor: models taking the same inputs.
        sites: recipient site -> donor site (`nn.Linear` submodule names).
        task_x, task_y: data of the skill to acquire.
        preserve_x: inputs on which the recipient's original behaviour is kept.
        task_loss: (output, y) -> loss; default cross-entropy.
        metric: (output, y) -> score, higher is better; default accuracy of argmax.
        behaviour: output -> the recipient's original decisions (default argmax over the output).
        eval_x, eval_y: held-out task data for the before/after metric (default the task data).
        lam: EWC strength.
        steps, lr: Adam steps and learning rate.
        bound: largest acceptable share of preservation inputs whose decision changes.
        seed: torch seed for the fine-tune.

    Returns:
        A `TransferReport`.
    """
    metric = metric or (lambda out, y: float((out.argmax(-1) == y).float().mean()))
    behaviour = behaviour or (lambda out: out.argmax(-1))
    eval_x = task_x if eval_x is None else eval_x
    eval_y = task_y if eval_y is None else eval_y
    torch.manual_seed(seed)
    new = copy.deepcopy(recipient)
    importance = fisher(copy.deepcopy(recipient), list(sites), preserve_x)
    anchor = {f"{s}.{k}": getattr(_linear(recipient, s, "recipient"), k).detach().clone()
              for s in sites for k in ("weight", "bias")}
    for p in new.parameters():
        p.requires_grad_(False)
    probes = torch.cat([task_x, preserve_x])
    projected = []
    for r_site, d_site in sites.items():
        r_mod, d_mod = _linear(new, r_site, "recipient"), _linear(donor, d_site, "donor")
        core = copy.deepcopy(d_mod)
        if core.weight.shape == r_mod.weight.shape:
            graft: nn.Module = core
        else:
            graft = _projected(recipient, r_site, donor, d_site, core, probes)
            projected.append(r_site)
        for p in graft.parameters():
            p.requires_grad_(True)
        _set(new, r_site, graft)
    with torch.no_grad():
        before = metric(recipient(eval_x), eval_y)
        original_out = recipient(preserve_x)
    trainable = [p for p in new.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=lr)
    new.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = task_loss(new(task_x), task_y) + lam * _ewc(new, sites, importance, anchor)
        loss.backward()
        opt.step()
    new.eval()
    with torch.no_grad():
        after = metric(new(eval_x), eval_y)
        out = new(preserve_x)
    moved = float((behaviour(out) != behaviour(original_out)).float().mean())
    drift = float((out - original_out).norm() / original_out.norm().clamp_min(1e-12))
    return TransferReport(new, list(sites), projected, before, after, moved, drift, bound, lam, steps)


def _ewc(model: nn.Module, sites: Mapping[str, str], importance: dict[str, torch.Tensor],
         anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    total = torch.zeros(())
    for s in sites:
        w, b = _site_weights(model.get_submodule(s))
        total = total + (importance[f"{s}.weight"] * (w - anchor[f"{s}.weight"]).square()).sum()
        total = total + (importance[f"{s}.bias"] * (b - anchor[f"{s}.bias"]).square()).sum()
    return total


def _projected(recipient: nn.Module, r_site: str, donor: nn.Module, d_site: str, core: nn.Linear,
               probes: torch.Tensor) -> Grafted:
    """Donor layer between least-squares projections fitted on the probes."""
    seen: dict[str, torch.Tensor] = {}

    def grab(model: nn.Module, site: str, key: str) -> None:
        module = model.get_submodule(site)
        hook = module.register_forward_hook(lambda m, i, o: seen.update({key + "_in": i[0].detach(),
                                                                          key + "_out": o.detach()}))
        try:
            with torch.no_grad():
                model(probes)
        finally:
            hook.remove()

    grab(recipient, r_site, "r")
    grab(donor, d_site, "d")
    p_in, p_out = fit_projection(seen["r_in"], seen["d_in"]), fit_projection(seen["d_out"], seen["r_out"])

    def linear(p: object) -> nn.Linear:
        layer = nn.Linear(*p.weight.shape)
        with torch.no_grad():
            layer.weight.copy_(p.weight.T)
            layer.bias.copy_(p.bias)
        return layer

    return Grafted(linear(p_in), core, linear(p_out))


__all__ = ["Grafted", "TransferReport", "activations", "fisher", "transfer"]
