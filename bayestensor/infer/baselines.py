"""MAP, mean-field VI and NUTS on the same batched log density.

* ``map_fit`` maximizes the log joint of the constrained values (no log-Jacobian), which is
  exactly the objective of Pyro's ``SVI`` with an ``AutoDelta`` guide (a test checks the two
  agree); it runs on the model's fast path and optimizes several restarts as one batch.
* ``vi_fit`` is mean-field Gaussian VI in unconstrained space (Pyro's ``AutoNormal`` family)
  with the reparameterized ELBO estimated from ``num_particles`` draws at once.
* ``nuts_fit`` hands the log density to Pyro's NUTS (as ``potential_fn``, its negative),
  chain after chain.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.infer import MCMC, NUTS
from tqdm.auto import trange

from bayestensor.infer.log_density import LogDensity
from bayestensor.seeds import legacy_seed

#: MAP and VI decay Adam's learning rate geometrically to this fraction of it over the run.
FINAL_LR_FRACTION = 0.1

def _decayed_adam(params, lr: float, num_steps: int):
    """Adam with its learning rate decayed to ``FINAL_LR_FRACTION`` over ``num_steps``."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: FINAL_LR_FRACTION ** (t / num_steps))
    return opt, sched


def map_fit(target: LogDensity, theta0: torch.Tensor, *, num_steps: int = 2000, lr: float = 0.02,
            tol: float = 1e-7, batch_size: int | None = None, progress: bool = True,
            patience: int = 50, hold: dict[str, float] | None = None) -> tuple[torch.Tensor, dict]:
    """Maximize ``log p(x, z)`` over constrained values, from ``theta0`` ``(C, D)``.

    Adam on the unconstrained vector with the learning rate decayed 10x over the run; stops
    when the objective improves by less than ``tol`` (relative) for ``patience`` steps in a row.
    ``hold`` maps site names to a fraction of ``num_steps`` during which that site stays at its
    starting value (a continuation: e.g. the noise precision held at ``1 / Var(y)`` while the
    rank prior prunes, then released). Returns the optimized ``theta`` and a trace.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps: expected a positive integer, got {num_steps}")
    held = _held_coordinates(target, hold or {}, num_steps, theta0.shape[-1])
    theta = theta0.detach().clone().requires_grad_(True)
    opt, sched = _decayed_adam([theta], lr, num_steps)
    history, best, stall = [], -math.inf, 0
    bar = trange(num_steps, desc="map", disable=not progress, leave=False)
    for t in bar:
        opt.zero_grad()
        values = target.constrain(theta)
        sub = target.draw_subsample(batch_size)
        obj = target.log_joint(values, sub)
        if not bool(torch.isfinite(obj).all()):
            raise FloatingPointError(
                f"map: objective is not finite at step {t} "
                f"({target.locate_nonfinite(theta)}); lower lr")
        (-obj.sum()).backward()
        for until, mask in held:
            if t < until:
                theta.grad[..., mask] = 0.0
        opt.step()
        sched.step()
        total = float(obj.detach().sum())
        history.append(total)
        if not math.isfinite(best) or total > best + tol * abs(best):
            best, stall = total, 0
        else:
            stall += 1
            if stall >= patience and batch_size is None and not any(t < u for u, _ in held):
                break
    return theta.detach(), {"objective": history, "steps": len(history)}


def _held_coordinates(target, hold: dict, num_steps: int, dim: int) -> list:
    """``[(steps held, boolean mask over the D coordinates)]`` for ``map_fit(hold=...)``."""
    out = []
    for name, fraction in hold.items():
        sites = [s for s in target.sites if s.name == name]
        if not sites:
            raise ValueError(f"hold: no latent site {name!r}; sites are {target.site_names}")
        if not 0 <= fraction <= 1:
            raise ValueError(f"hold[{name!r}]: expected a fraction in [0, 1], got {fraction}")
        site = sites[0]
        mask = torch.zeros(dim, dtype=torch.bool, device=target.device)
        mask[site.offset:site.offset + math.prod(site.unconstrained_shape)] = True
        out.append((int(round(fraction * num_steps)), mask))
    return out


def vi_fit(target: LogDensity, theta0: torch.Tensor, *, num_steps: int = 3000, lr: float = 0.01,
           num_particles: int = 8, init_scale: float = 0.01, batch_size: int | None = None,
           progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Mean-field Gaussian VI in unconstrained space; returns ``(loc, scale, info)``.

    ELBO = E_q[log p(x, theta) + log|J|] + entropy(q), with ``q = Normal(loc, scale)`` per
    coordinate, estimated with ``num_particles`` reparameterized draws evaluated as one batch.
    """
    loc = theta0.detach().reshape(-1).clone().requires_grad_(True)
    log_scale = torch.full_like(loc, math.log(init_scale)).requires_grad_(True)
    opt, sched = _decayed_adam([loc, log_scale], lr, num_steps)
    history = []
    bar = trange(num_steps, desc="vi", disable=not progress, leave=False)
    for t in bar:
        opt.zero_grad()
        eps = torch.randn((num_particles, loc.shape[0]), generator=target.generator,
                          device=target.device)
        theta = loc + log_scale.exp() * eps
        logp = target.log_density(theta, target.draw_subsample(batch_size))
        if not bool(torch.isfinite(logp).all()):
            raise FloatingPointError(f"vi: ELBO is not finite at step {t} "
                                     f"({target.locate_nonfinite(theta.detach())}); lower lr")
        elbo = logp.mean() + log_scale.sum()
        (-elbo).backward()
        opt.step()
        sched.step()
        history.append(float(elbo.detach()))
    return loc.detach(), log_scale.detach().exp(), {"elbo": history}


def nuts_fit(target: LogDensity, theta0: torch.Tensor, *, num_samples: int, num_warmup: int,
             seed: int, progress: bool = True, target_accept: float = 0.8,
             max_tree_depth: int = 10) -> tuple[torch.Tensor, dict]:
    """Run Pyro's NUTS on the log density, one chain per row of ``theta0``; returns ``(C, S, D)``."""
    if target.subsample_plates:
        raise ValueError("method: NUTS needs the full data; the model sub-samples plates "
                         f"{sorted(target.subsample_plates)} (drop batch_size)")

    def potential_fn(params):
        return -target.log_density(params["theta"].unsqueeze(0))[0]

    chains, divergences, accept = [], [], []
    for c in range(theta0.shape[0]):
        pyro.set_rng_seed(legacy_seed(seed + c))
        kernel = NUTS(potential_fn=potential_fn, target_accept_prob=target_accept,
                      max_tree_depth=max_tree_depth, adapt_mass_matrix=True)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup,
                    initial_params={"theta": theta0[c].detach().clone()},
                    disable_progbar=not progress)
        mcmc.run()
        chains.append(mcmc.get_samples()["theta"])
        diag = mcmc.diagnostics()
        divergences.append(len(diag.get("divergences", {}).get("chain 0", [])))
        accept.append(float(diag.get("acceptance rate", {}).get("chain 0", float("nan"))))
    return torch.stack(chains), {"divergences": divergences, "acceptance_rate": accept}
