"""``fit``: one front door from a model and data to a :class:`Posterior`."""

from __future__ import annotations

import platform
import time
from typing import Callable

import numpy as np
import pyro
import torch

from bayestensor.models.base import BayesModel
from bayestensor.infer.baselines import map_fit, nuts_fit, vi_fit
from bayestensor.results.posterior import Posterior
from bayestensor.infer.log_density import LogDensity
from bayestensor.infer.driver import Run
from bayestensor.infer.sghmc import SGHMC
from bayestensor.infer.svgd import SVGD

METHODS = ("map", "vi", "nuts", "sghmc", "svgd")
BLOCK_MODES = ("all", "site", "slice", "coordinate")
#: Largest ``D * n_particles**2`` for which SVGD defaults to per-coordinate kernel blocks.
MAX_COORDINATE_BLOCKS = 50_000_000

#: Default number of draws (SGHMC, NUTS, VI) or particles (SVGD) per method.
DEFAULT_SAMPLES = {"map": 1, "vi": 1000, "nuts": 500, "sghmc": 1000, "svgd": 100}


def _positive_int(name: str, value, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _check_device(device):
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was asked for but CUDA is not available")
    return dev


def _check_custom_batch_size(model, model_args, model_kwargs, batch_size):
    """A custom model's sub-sampled plates fix their own size; refuse a different one."""
    trace = pyro.poutine.trace(pyro.poutine.block(model, hide_types=["param"])).get_trace(
        *model_args, **(model_kwargs or {}))
    for name, node in trace.nodes.items():
        fn = node.get("fn")
        if node["type"] == "sample" and type(fn).__name__ == "_Subsample":
            if fn.subsample_size is not None and int(fn.subsample_size) != int(batch_size) \
                    and int(fn.subsample_size) < int(fn.size):
                raise ValueError(
                    f"batch_size: the model's plate {name!r} declares subsample_size="
                    f"{int(fn.subsample_size)}; set the mini-batch size there (and leave "
                    f"batch_size unset) or make them equal, got batch_size={batch_size}")


def _setup(model, data, model_args, model_kwargs, batch_size, init, seed, device=None):
    """Model function, its arguments, starting values and fast path."""
    if isinstance(model, BayesModel):
        if data is not None:
            model.set_data(data)
        if batch_size is not None and batch_size > model.n_data():
            raise ValueError(f"batch_size: {batch_size} exceeds the {model.n_data()} observations")
        kwargs = {"subsample_size": batch_size} if batch_size is not None else {}
        model.to("cpu")
        init_values = init if isinstance(init, dict) else model.init_values(seed=seed, init=init)
        model.to(device or "cpu")
        fast = model.fast_log_joint if model.has_fast_path else None
        return model.pyro_model, model.model_args(), kwargs, init_values, fast
    if not callable(model):
        raise TypeError(f"model: expected a bayestensor model or a Pyro model function, got {type(model).__name__}")
    if data is not None:
        raise ValueError("data: a custom Pyro model receives its data through model_args / model_kwargs")
    init_values = init if isinstance(init, dict) else {}
    if batch_size is not None:
        _check_custom_batch_size(model, model_args, model_kwargs, batch_size)
    args = tuple(a.to(device) if (device is not None and isinstance(a, torch.Tensor)) else a
                 for a in model_args)
    return model, args, dict(model_kwargs or {}), init_values, None


def block_ids(potential: LogDensity, model, mode: str) -> torch.Tensor:
    """Block id per coordinate for SVGD's block kernel.

    ``"all"``: one block (isotropic kernel). ``"site"``: one block per latent site.
    ``"slice"``: built-in models split each low-rank parameter by its rank slice (e.g. one block
    per CP factor column), other sites one block each. ``"coordinate"``: every coordinate its
    own block (least variance collapse; memory ``D * n**2``).
    """
    if mode not in BLOCK_MODES:
        raise ValueError(f"blocks: expected one of {BLOCK_MODES}, got {mode!r}")
    ids = torch.zeros(potential.dim, dtype=torch.long)
    if mode == "all":
        return ids
    if mode == "coordinate":
        return torch.arange(potential.dim)
    axes = model.block_axes() if (mode == "slice" and isinstance(model, BayesModel)) else {}
    next_id = 0
    for site in potential.sites:
        span = slice(site.offset, site.offset + site.size)
        axis = axes.get(site.name)
        if axis is None or site.unconstrained_shape != site.shape:
            ids[span] = next_id
            next_id += 1
            continue
        n_slices = site.shape[axis]
        local = torch.arange(n_slices).reshape(
            [n_slices if a == axis else 1 for a in range(len(site.shape))]).expand(site.shape)
        ids[span] = next_id + local.reshape(-1)
        next_id += n_slices
    return ids


def _to_posterior(potential: LogDensity, thetas: list[torch.Tensor], stats: dict, method: str,
                  model, info: dict) -> Posterior:
    """``thetas``: list over draws of ``(C, D)`` → samples ``(C, S, ...)`` in constrained space."""
    theta = torch.stack(thetas, 1)  # (C, S, D)
    c, s, d = theta.shape
    values = potential.constrain(theta.reshape(c * s, d))
    samples = {k: v.detach().reshape((c, s) + tuple(v.shape[1:])).cpu() for k, v in values.items()}
    stats = {k: v.detach().cpu() for k, v in stats.items()}
    return Posterior(samples, stats, method, model if isinstance(model, BayesModel) else None, info)


def fit(model, data=None, method: str = "map", *, seed: int = 0, num_samples: int | None = None,
        num_warmup: int | None = None, num_chains: int = 1, thin: int = 1,
        batch_size: int | None = None, batches=None, init="svd", progress: bool = True,
        checkpoint=None, checkpoint_every: int = 100, resume=None, model_args=(),
        model_kwargs: dict | None = None, device=None, backend: str = "local",
        chain_groups: int | None = None, address: str | None = None, **options) -> Posterior:
    """Fit a model and return its posterior.

    Parameters
    ----------
    model : BayesModel or callable
        A built-in model (e.g. :class:`bayestensor.TensorCompletion`) or any Pyro model with
        continuous latent sites.
    data : optional
        Data for a built-in model (for completion: ``Observations``, ``(indices, values)``,
        ``(dense, mask)`` or a dense array with NaN for missing).
    method : {"map", "vi", "nuts", "sghmc", "svgd"}
        ``"map"``: posterior mode (one draw). ``"vi"``: mean-field Gaussian VI, ``num_samples``
        draws from it. ``"nuts"``: Pyro's NUTS, ``num_chains`` chains of ``num_samples``.
        ``"sghmc"``: :class:`~bayestensor.infer.sghmc.SGHMC`, ``num_chains`` chains run as one
        batch. ``"svgd"``: :class:`~bayestensor.infer.svgd.SVGD` with ``num_samples`` particles.
    seed : int
        Seeds every random choice; same seed, same result on the same machine.
    num_samples : int, optional
        Draws per chain (particles for SVGD); method default from ``DEFAULT_SAMPLES``.
    num_warmup : int, optional
        Burn-in steps (SGHMC, NUTS); default ``num_samples``.
    num_chains : int
        Chains (SGHMC, NUTS) or MAP restarts.
    thin : int
        Keep every ``thin``-th SGHMC draw.
    batch_size : int, optional
        Mini-batch size: the data plate of a built-in model or the sub-sampled plates of a Pyro
        model; the log-likelihood is scaled by N/B.
    batches : iterable, optional
        For custom models: mini-batches as model-argument tuples (SGHMC, SVGD).
    init : {"svd", "random"} or dict
        Starting point: the built-in model's data-driven initialization, or constrained values.
    progress : bool
        Show a progress bar.
    checkpoint : path, optional
        File written every ``checkpoint_every`` draws (SGHMC) or steps (SVGD) and at the end.
    resume : path, optional
        Continue an interrupted SGHMC/SVGD run from its checkpoint.
    model_args, model_kwargs
        Arguments of a custom Pyro model.
    device : str or torch.device, optional
        Run the chains/particles there (e.g. ``"cuda"``); a built-in model's data is moved
        there. Samples always come back on the CPU.
    backend : {"local", "ray"}
        ``"ray"`` runs chain groups (SGHMC, NUTS, VI, MAP restarts) or independent SVGD runs
        (``num_chains`` of them, ``num_samples`` particles each) as Ray tasks and merges them
        along the chain dimension; see :mod:`bayestensor.parallel`.
    chain_groups : int, optional
        Number of groups (Ray tasks); default one per chain with Ray, one group locally. The
        local backend with the same ``chain_groups`` gives the same numbers as Ray.
    address : str, optional
        Address of an existing Ray cluster (default: start a local one).
    **options
        Method settings: ``lr``, ``friction``, ``noise_estimate``, ``precondition``,
        ``init_from`` (``"map"``: start the chains at the MAP, the default; ``"init"``: at the
        starting values), ``map_steps`` (SGHMC);
        ``lr``, ``kernel``, ``blocks``, ``optimizer``, ``num_steps``, ``init_from``
        (``"map" | "prior"``), ``init_jitter`` (SVGD); ``num_steps``, ``lr`` (MAP, VI);
        ``num_particles`` (VI ELBO draws); ``target_accept``, ``max_tree_depth`` (NUTS);
        ``map_hold`` (MAP and the MAP start of SGHMC/SVGD): ``{site: fraction}`` of the MAP
        steps during which a site stays at its starting value (see ``map_fit``), or
        ``"auto"`` to choose between none and the model's ``map_hold_candidate`` by held-out
        error (:func:`choose_map_hold`); defaults to the model's ``map_hold`` attribute. For
        very noisy completion, ``{"noise_precision": 0.1}`` keeps the joint MAP from fitting
        the noise with extra slices (see ``docs/completion.md``).

    Returns
    -------
    Posterior

    Raises
    ------
    ValueError
        Unknown method or option, non-positive sizes or step sizes, bad data, discrete latents.
    RunInterrupted
        Ctrl-C / SIGTERM during SGHMC or SVGD; carries the draws so far.
    DivergenceError
        A non-finite log density; carries the draws so far.
    """
    method = str(method).lower()
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if backend not in ("local", "ray"):
        raise ValueError(f"backend: expected 'local' or 'ray', got {backend!r}")
    if backend == "ray" or (chain_groups is not None and chain_groups > 1):
        if resume is not None or checkpoint is not None:
            raise ValueError("checkpoint: not supported with chain groups; checkpoint each "
                             "group's fit instead")
        from bayestensor.parallel import fit_chain_groups

        _positive_int("num_chains", num_chains, allow_none=False)
        groups = chain_groups if chain_groups is not None else num_chains
        _positive_int("chain_groups", groups, allow_none=False)
        _resolve_map_hold(model, data, method, seed, batch_size, options)  # once, not per group
        return fit_chain_groups(model, data, num_chains=num_chains, groups=groups, seed=seed,
                                backend=backend, method=method, address=address,
                                num_samples=num_samples, num_warmup=num_warmup, thin=thin,
                                batch_size=batch_size, batches=batches, init=init,
                                progress=False, model_args=model_args, model_kwargs=model_kwargs,
                                device=device, **options)
    num_samples = _positive_int("num_samples", num_samples) or DEFAULT_SAMPLES[method]
    num_chains = _positive_int("num_chains", num_chains, allow_none=False)
    thin = _positive_int("thin", thin, allow_none=False)
    batch_size = _positive_int("batch_size", batch_size)
    if num_warmup is not None and (not isinstance(num_warmup, (int, np.integer)) or num_warmup < 0):
        raise ValueError(f"num_warmup: expected a non-negative integer, got {num_warmup!r}")
    if resume is not None and method not in ("sghmc", "svgd"):
        raise ValueError(f"resume: only SGHMC and SVGD runs can be resumed, not {method!r}")
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    allowed = _METHOD_OPTIONS[method]
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"options: {sorted(unknown)} not understood by method {method!r}; "
                         f"it takes {sorted(allowed)}")

    hold_choice = _resolve_map_hold(model, data, method, seed, batch_size, options)
    device = _check_device(device)
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    fn, args, kwargs, init_values, fast = _setup(model, data, model_args, model_kwargs,
                                                 batch_size, init, seed, device)
    potential = LogDensity(fn, args, kwargs, init_values=init_values, fast_log_joint=fast, seed=seed,
                          device=device)
    info = {"method": method, "seed": int(seed), "num_chains": num_chains,
            "num_samples": num_samples, "batch_size": batch_size, "options": dict(options),
            "torch": str(torch.__version__), "pyro": str(pyro.__version__), "python": platform.python_version(),
            "machine": platform.machine()}
    if isinstance(model, BayesModel):
        info["model"] = model.config()
    start = time.perf_counter()
    runner = _RUNNERS[method]
    post = runner(potential, model, num_samples=num_samples, num_warmup=num_warmup,
                  num_chains=num_chains, thin=thin, batch_size=batch_size, batches=batches,
                  seed=seed, progress=progress, checkpoint=checkpoint,
                  checkpoint_every=checkpoint_every, resume=resume, info=info, **options)
    post.info["seconds"] = time.perf_counter() - start
    if hold_choice is not None:
        post.info["map_hold_auto"] = hold_choice
    return post


def _resolve_map_hold(model, data, method, seed, batch_size, options) -> dict | None:
    """Fill ``options["map_hold"]`` from the model's default and resolve ``"auto"`` in place;
    returns the auto choice (or None)."""
    if method not in ("map", "sghmc", "svgd"):
        return None
    if "map_hold" not in options:  # a model may declare a default MAP continuation
        options["map_hold"] = getattr(model, "map_hold", None)
    if options["map_hold"] != "auto":
        return None
    steps = options.get("num_steps" if method == "map" else "map_steps")
    choice = choose_map_hold(model, data, seed=seed, batch_size=batch_size, num_steps=steps)
    options["map_hold"] = choice["chosen"]
    return choice


def choose_map_hold(model, data, *, seed: int = 0, validation: float = 0.1,
                    margin: float = 0.02, batch_size: int | None = None,
                    num_steps: int | None = None) -> dict:
    """Pick ``map_hold`` for a model by held-out error: none, or ``model.map_hold_candidate``.

    Two MAP fits on ``1 - validation`` of the observations, one plain and one with the
    candidate continuation; the candidate is chosen when its mean squared error on the
    held-out ``validation`` fraction is lower by more than ``margin`` (relative). The
    continuation helps when the plain joint MAP fits noise with extra slices (very noisy data)
    and hurts when it prunes weak real components, and the held-out error tells which case a
    data set is in. Used by ``fit(..., map_hold="auto")``.

    Returns
    -------
    dict
        ``{"chosen": hold or None, "validation_mse": {"none": .., "hold": ..}}`` (no fits and
        ``validation_mse`` None below 50 observations).
    """
    if not 0 < validation < 1:
        raise ValueError(f"validation: expected a fraction in (0, 1), got {validation!r}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin: expected a number in [0, 1), got {margin!r}")
    candidate = getattr(model, "map_hold_candidate", None)
    if candidate is None or not hasattr(model, "set_data"):
        raise ValueError("map_hold: 'auto' needs a model with a map_hold_candidate (e.g. "
                         f"TensorCompletion), got {type(model).__name__}")
    model.set_data(data)
    if len(model.observations) < 50:  # too few entries to spare a validation split
        return {"chosen": None, "validation_mse": None}
    train, val = model.observations.split(validation, seed=seed)
    kwargs = {} if num_steps is None else {"num_steps": num_steps}
    if batch_size is not None:
        kwargs["batch_size"] = min(batch_size, len(train))
    target = val.values.double().numpy()
    errors = {}
    for label, hold in (("none", None), ("hold", candidate)):
        post = fit(model, train, method="map", seed=seed, progress=False, map_hold=hold, **kwargs)
        errors[label] = float(np.mean((post.predict(val.indices).mean - target) ** 2))
    model.set_data(data)
    chosen = candidate if errors["hold"] < (1 - margin) * errors["none"] else None
    return {"chosen": chosen, "validation_mse": errors}


def _run_map(potential, model, *, num_chains, batch_size, progress, info, num_steps=2000,
             lr=0.02, init_jitter=None, map_hold=None, **_):
    if init_jitter is None:  # restarts need distinct starts
        init_jitter = 0.1 if num_chains > 1 else 0.0
    theta0 = potential.init_theta(num_chains, jitter=init_jitter)
    theta, trace = map_fit(potential, theta0, num_steps=num_steps, lr=lr, batch_size=batch_size,
                           progress=progress, hold=map_hold)
    logp = potential.log_joint(potential.constrain(theta)).detach()
    best = int(logp.argmax())
    info.update(map_steps=trace["steps"], map_objective=trace["objective"][-1],
                restarts_log_joint=logp.tolist())
    stats = {"log_joint": logp[best].reshape(1, 1)}
    return _to_posterior(potential, [theta[best:best + 1]], stats, "map", model, info)


def _run_vi(potential, model, *, num_samples, batch_size, progress, info, num_steps=3000,
            lr=0.01, num_particles=8, **_):
    theta0 = potential.init_theta(1)
    loc, scale, trace = vi_fit(potential, theta0, num_steps=num_steps, lr=lr,
                               num_particles=num_particles, batch_size=batch_size, progress=progress)
    eps = torch.randn((num_samples, loc.shape[0]), generator=potential.generator,
                      device=potential.device)
    draws = (loc + scale * eps).unsqueeze(0)  # (1, S, D)
    info.update(final_elbo=trace["elbo"][-1], vi_steps=num_steps)
    return _to_posterior(potential, list(draws.unbind(1)), {}, "vi", model, info)


def _run_nuts(potential, model, *, num_samples, num_warmup, num_chains, seed, progress, info,
              batch_size=None, init_jitter=0.0, target_accept=0.8, max_tree_depth=10, **_):
    theta0 = potential.init_theta(num_chains, jitter=init_jitter)
    warm = num_samples if num_warmup is None else num_warmup
    draws, diag = nuts_fit(potential, theta0, num_samples=num_samples, num_warmup=warm, seed=seed,
                           progress=progress, target_accept=target_accept,
                           max_tree_depth=max_tree_depth)
    c, s, d = draws.shape
    with torch.no_grad():
        logp = potential.log_density(draws.reshape(c * s, d)).reshape(c, s)
    info.update(diag)
    return _to_posterior(potential, list(draws.unbind(1)), {"potential": -logp}, "nuts", model, info)


def _make_run(method, potential, model, step, record, num_steps, info, seed, progress,
              checkpoint, checkpoint_every, to_stats, num_chains):
    def make_posterior(draws, run_info):
        thetas = [d["theta"] for d in draws]
        return _to_posterior(potential, thetas, to_stats(draws), method, model, {**info, **run_info})

    def describe(state):
        return potential.locate_nonfinite(state.theta)

    config = {"method": method, "num_chains": num_chains, "dim": potential.dim, "seed": seed}
    return Run(step, record, num_steps, make_posterior, describe, potential.generator,
               checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
               desc=method, config=config)


def _run_sghmc(potential, model, *, num_samples, num_warmup, num_chains, thin, batch_size,
               batches, seed, progress, checkpoint, checkpoint_every, resume, info, lr=0.01,
               friction=0.1, noise_estimate=0.0, precondition=True, init_jitter=0.0,
               init_from="map", map_steps=1000, map_hold=None, **_):
    if init_from not in ("map", "init"):
        raise ValueError(f"init_from: expected 'map' or 'init', got {init_from!r}")
    sampler = SGHMC(potential, lr=lr, friction=friction, noise_estimate=noise_estimate,
                    precondition=precondition, batch_size=batch_size, batches=batches)
    warm = num_samples if num_warmup is None else num_warmup
    total = warm + num_samples * thin
    info.update(lr=lr, friction=friction, noise_estimate=noise_estimate, num_warmup=warm, thin=thin,
                precondition=precondition)

    adapt_steps = {int(warm * f) for f in (0.1, 0.25, 0.5, 0.75)} - {0} if warm else set()

    ramp = max(1, warm // 4)

    def step(state, t):
        # Burn-in starts at a tenth of the learning rate and reaches it after a quarter.
        scale = min(1.0, 0.1 + 0.9 * t / ramp) if t < warm else 1.0
        new = sampler.step(state, t, adapt_at=t in adapt_steps, lr_scale=scale)
        return new, new.log_density

    def record(state, t):
        if t < warm or (t - warm) % thin:
            return None
        return {"theta": state.theta.clone(), "potential": -state.log_density,
                "grad_norm": state.grad_norm}

    def to_stats(draws):
        return {"potential": torch.stack([d["potential"] for d in draws], 1),
                "grad_norm": torch.stack([d["grad_norm"] for d in draws], 1),
                "step_size": torch.full((num_chains, len(draws)), float(lr))}

    run = _make_run("sghmc", potential, model, step, record, total, info, seed, progress,
                    checkpoint, checkpoint_every, to_stats, num_chains)
    if resume is not None:
        state, t0, draws = run.resume_from(resume)
        return run.run(state, t0, draws)
    theta0 = potential.init_theta(1)
    if init_from == "map":
        # The curvature that sets the preconditioner is measured where the chains start:
        # starting at the mode makes it representative (a far start can leave it too small
        # and the chains unstable once they reach the mode).
        theta0, _ = map_fit(potential, theta0, num_steps=map_steps, batch_size=batch_size,
                            progress=progress, hold=map_hold)
    theta0 = theta0.expand(num_chains, -1).clone()
    if init_jitter > 0:
        theta0 = theta0 + init_jitter * torch.randn(theta0.shape, generator=potential.generator,
                                                    device=potential.device)
    state = sampler.init_state(theta0)
    return run.run(state)


def _run_svgd(potential, model, *, num_samples, batch_size, batches, seed, progress, checkpoint,
              checkpoint_every, resume, info, lr=0.05, kernel="rbf", blocks=None, optimizer="adagrad",
              num_steps=500, init_from="map", init_jitter=0.1, map_steps=2000, final_lr_ratio=0.01,
              map_hold=None, **_):
    num_particles = num_samples
    if num_particles < 2:
        raise ValueError(f"num_samples: SVGD needs at least 2 particles, got {num_particles}")
    _positive_int("num_steps", num_steps, allow_none=False)
    if init_from not in ("map", "prior"):
        raise ValueError(f"init_from: expected 'map' or 'prior', got {init_from!r}")
    if blocks is None:
        if potential.dim * num_particles**2 <= MAX_COORDINATE_BLOCKS:
            blocks = "coordinate"
        else:
            blocks = "slice" if isinstance(model, BayesModel) else "site"
    ids = block_ids(potential, model, blocks) if isinstance(blocks, str) else blocks
    sampler = SVGD(potential, kernel=kernel, blocks=ids, lr=lr, optimizer=optimizer,
                   batch_size=batch_size, batches=batches, final_lr_ratio=final_lr_ratio,
                   num_steps=num_steps)
    info.update(num_particles=num_particles, svgd_steps=num_steps, kernel=str(kernel),
                blocks=blocks if isinstance(blocks, str) else "custom", init_from=init_from,
                init_jitter=init_jitter, lr=lr, optimizer=optimizer)

    def step(state, t):
        new = sampler.step(state, t)
        return new, new.log_density

    def record(state, t):
        if t != num_steps - 1:
            return None
        info.update(final_kernel_stats=state.stats)
        return {"theta": state.theta.clone()}

    def to_stats(draws):
        return {}

    def make_posterior(draws, run_info):
        particles = draws[-1]["theta"] if draws else None
        values = potential.constrain(particles)
        samples = {k: v.detach().unsqueeze(0).cpu() for k, v in values.items()}
        with torch.no_grad():
            logp = potential.log_density(particles).unsqueeze(0).cpu()
        return Posterior(samples, {"log_density": logp}, "svgd",
                         model if isinstance(model, BayesModel) else None, {**info, **run_info})

    config = {"method": "svgd", "num_chains": num_particles, "dim": potential.dim, "seed": seed}
    run = Run(step, record, num_steps, make_posterior,
              lambda s: potential.locate_nonfinite(s.theta), potential.generator,
              checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
              desc="svgd", config=config, save_per_step=True)
    if resume is not None:
        state, t0, draws = run.resume_from(resume)
        return run.run(state, t0, draws)
    state = sampler.init_state(_svgd_init(potential, num_particles, init_from, init_jitter,
                                          map_steps, batch_size, progress, map_hold))
    return run.run(state)


def _svgd_init(potential, n, init_from, jitter, map_steps, batch_size, progress, map_hold=None):
    """Particles from a MAP fit plus Gaussian jitter, or from prior draws."""
    gen = potential.generator
    if init_from == "map":
        theta, _ = map_fit(potential, potential.init_theta(1), num_steps=map_steps,
                           batch_size=batch_size, progress=progress, hold=map_hold)
        return theta.expand(n, -1) + jitter * torch.randn((n, potential.dim), generator=gen,
                                                          device=potential.device)
    draws = []
    for _ in range(n):
        trace = pyro.poutine.trace(potential.model).get_trace(*potential.model_args,
                                                              **potential.model_kwargs)
        values = {s.name: trace.nodes[s.name]["value"] for s in potential.sites}
        draws.append(potential.unconstrain(values).clamp(-30, 30))
    return torch.stack(draws)


_COMMON = {"init_jitter"}
_METHOD_OPTIONS: dict[str, set] = {
    "map": {"num_steps", "lr", "map_hold"} | _COMMON,
    "vi": {"num_steps", "lr", "num_particles"},
    "nuts": {"target_accept", "max_tree_depth"} | _COMMON,
    "sghmc": {"lr", "friction", "noise_estimate", "precondition", "init_from", "map_steps",
              "map_hold"} | _COMMON,
    "svgd": {"lr", "kernel", "blocks", "optimizer", "num_steps", "init_from", "init_jitter",
             "map_steps", "final_lr_ratio", "map_hold"},
}
_RUNNERS: dict[str, Callable] = {"map": _run_map, "vi": _run_vi, "nuts": _run_nuts,
                                 "sghmc": _run_sghmc, "svgd": _run_svgd}
