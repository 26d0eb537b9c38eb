"""``fit``: one front door from a model and data to a :class:`Posterior`, and the one registry
of inference methods.

``METHODS`` maps each method name to its :class:`~bayestensor.infer.runners.Method`: the
runner, the option names with their defaults, the default number of samples and which general
settings apply (batched chains, checkpoints, mini-batches of model arguments, a MAP fit that
``map_hold`` continues). ``fit`` checks every setting against it before any work (sizes,
seed, the method's options, device, checkpoint and resume paths), lets the method settle the
options that depend on the fit (:mod:`~bayestensor.infer.auto_options`), then runs one local
fit (:func:`~bayestensor.infer.runners.run_method`) or chain groups
(:func:`~bayestensor.infer.chains.fit_chain_groups`).
"""

from __future__ import annotations

import warnings

from bayestensor.checks import choice, positive_int, seed_value
from bayestensor.infer.auto_options import FitPlan, fit_default_method
from bayestensor.infer.baselines import ChainsNotConvergedWarning, SaturatedDrawsWarning
from bayestensor.infer.binding import check_device
from bayestensor.infer.chains import fit_chain_groups, group_sizes
from bayestensor.infer.checkpoints import check_checkpoint_path, check_resume_path
from bayestensor.infer.continuation import choose_map_hold, resolve_map_hold
from bayestensor.infer.runners import ALL_METHODS, Method, run_method
from bayestensor.models.base import BayesModel
from bayestensor.results.convergence import saturated_message, unconverged_message
from bayestensor.results.posterior import Posterior

#: The named starts of the built-in models (each model checks which of them it takes).
INIT_NAMES = ("svd", "spectral", "random", "map")

#: The inference methods by name.
METHODS: dict[str, Method] = {m.name: m for m in ALL_METHODS}

__all__ = ["fit", "METHODS", "choose_map_hold"]


def fit(model, data=None, method: str | None = None, *, seed: int = 0,
        num_samples: int | None = None, num_warmup: int | None = None,
        num_chains: int | None = None, thin: int | None = None,
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
    method : {"map", "vi", "nuts", "sghmc", "svgd"}, optional
        ``"map"``: posterior mode (one draw). ``"vi"``: mean-field VI, ``num_samples`` draws
        from it (for a CP completion under any of the three rank priors by closed-form
        coordinate ascent, :mod:`bayestensor.models.cp_variational`; otherwise a Gaussian
        fitted by stochastic gradients). Default: ``"vi"`` for a
        :class:`~bayestensor.TensorCompletion` in CP format under any of the three rank
        priors fitted on the full data on the CPU (where the closed form runs), ``"map"`` for
        every other model
        (:func:`bayestensor.models.completion.default_method` says why). ``"nuts"``: Pyro's
        NUTS, ``num_chains`` chains of ``num_samples``.
        ``"sghmc"``: :class:`~bayestensor.infer.sghmc.SGHMC`, ``num_chains`` chains run as one
        batch. ``"svgd"``: :class:`~bayestensor.infer.svgd.SVGD` with ``num_samples`` particles.
    seed : int
        Seeds every random choice; same seed, same result on the same machine. Any integer in
        ``[0, 2**63 - 1]`` (``bayestensor.seeds.MAX_SEED``). The generators use 32 bits of it
        (torch's CPU generator keeps the low 32 bits of a seed; Python's and NumPy's legacy
        generators get ``seed % 2**32``), so seeds equal modulo 2**32 give the same run.
    num_samples : int, optional
        Draws per chain (particles for SVGD); default ``METHODS[method].default_samples``.
        SGHMC with two chains or more, left at its default of 1,000, draws on in blocks of
        500 until its chains pass their convergence check, up to 4,000 and to 1 GiB of kept
        draws (``max_samples``, :mod:`bayestensor.infer.stopping`); a number given is drawn
        exactly.
    num_warmup : int, optional
        Burn-in steps (SGHMC, NUTS); default ``num_samples``.
    num_chains : int, optional
        Chains (SGHMC, NUTS), MAP restarts (the best one is kept), or independent runs of VI
        and SVGD (each a chain group, run in turn locally; see ``chain_groups``). Default
        ``METHODS[method].default_chains``: 4 for SGHMC and NUTS, so that R-hat can compare
        chains (SGHMC batches them: four cost about what one does on small and medium
        tensors; NUTS runs a worker process per chain, as many at once as there are cores), 1
        for the other methods.
    thin : int, optional
        Keep every ``thin``-th SGHMC draw. Default: the built-in model's ``sghmc_thin`` (2
        for a Tucker completion, whose core mixes slower per step; 1 otherwise), 1 for a
        Pyro model.
    batch_size : int, optional
        Mini-batch size: the data plate of a built-in model or the sub-sampled plates of a Pyro
        model; the log-likelihood is scaled by N/B.
    batches : iterable, optional
        For custom models: mini-batches as model-argument tuples (SGHMC, SVGD).
    init : {"svd", "spectral", "random", "map"} or dict
        Starting point: a built-in model's data-driven initialization (each model names the
        ones it takes), or constrained values of latent sites by name (an unknown name is
        refused, naming the model's sites). Any other string is refused before any work.
    progress : bool
        Show a progress bar.
    checkpoint : path, optional
        File written every ``checkpoint_every`` draws (SGHMC) or steps (SVGD) and at the end;
        the draws go to files beside it (``PATH.draws-000000``, ...), appended, not rewritten
        (see :mod:`bayestensor.infer.checkpoints`).
    checkpoint_every : int
        Draws (SGHMC) or steps (SVGD) between checkpoints; checkpoints due within a second of
        the previous one wait for the next (``driver.MIN_CHECKPOINT_SECONDS``), and an
        interrupt always writes one.
    resume : path, optional
        Continue an interrupted SGHMC/SVGD run from its checkpoint. The run must be the same:
        a checkpoint of other data, another seed, ``num_samples`` or sampler settings is
        refused, naming what differs.
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
        Number of groups (Ray tasks); default one per chain with Ray, one group locally
        (for VI and SVGD one per chain on both backends, and no other number). The local
        backend with the same ``chain_groups`` gives the same numbers as Ray. In the merged
        posterior's ``info`` a ``*_converged`` flag holds only if every group's does, the
        other entries are the first group's, and ``info["group_info"]`` lists per group the
        entries that differ between groups (its seed, steps, final ELBO, ...).
    address : str, optional
        Address of an existing Ray cluster (default: start a local one).
    **options
        Method settings, declared with their defaults in ``METHODS[method].options``: ``lr``,
        ``friction``, ``noise_estimate``, ``precondition``, ``init_from`` (``"map"``: start the
        chains at the MAP, the default; ``"init"``: at the starting values), ``map_steps``,
        ``gibbs`` (``True``: exact redraws of a built-in model's precisions, see
        ``docs/inference.md``; ``False``: none; ``{site: conditional}``: those sites, for any
        model, a number standing for a Gamma conditional's shape), ``scale_moves``
        (``True``: exact Metropolis moves of a built-in CP model's rank slices along their
        scale, a check that the chains explore the switched-off slices, see
        ``docs/inference.md``; default ``False``), ``factor_redraws`` (exact Gibbs redraws of
        the factors: ``True`` for a CP completion's factor rows or a regression's factors or
        cores and intercept; ``"auto"``, the default, runs them where the model takes them by
        default, a regression on full-batch data on the CPU, and a completion's empty rows;
        ``False``: none),
        ``max_samples`` (most draws per chain when drawing until the chains pass their
        convergence check: the report's, R-hat at most 1.01 and bulk ESS at least 100 per
        chain, and R-hat at most 1.015 over 1,000 predicted entries; checked after
        ``num_samples`` draws, every half of that after and at the last draw; the draws
        stop short of it where they would hold more than 1 GiB,
        ``bayestensor.infer.stopping.MAX_KEPT_BYTES``; ``None``: exactly
        ``num_samples``; ``"auto"``, the default: 4 x 1,000 when ``num_samples`` is left to
        its default with two chains or more, otherwise ``None``)
        (SGHMC);
        ``lr``, ``kernel``, ``blocks``, ``optimizer``, ``num_steps``, ``init_from``
        (``"map" | "prior"``), ``init_jitter`` (SVGD; in Laplace sds at the MAP start);
        ``num_steps``, ``lr`` (MAP, VI); ``quasi_newton`` (MAP: ``"auto"``, ``True`` or
        ``False``: hand over from Adam to L-BFGS after 5% of the steps; ``"auto"`` does for
        built-in CP models, see ``docs/inference.md``), ``block_ascent`` (MAP: ``"auto"``,
        ``True`` or ``False``: at the hand-over, the model's closed-form block ascent instead
        of L-BFGS, where it has one: CP completion and Gaussian CP regression under the gamma
        prior);
        ``num_particles`` (VI ELBO draws); ``target_accept``, ``max_tree_depth``, ``processes``
        (NUTS: worker processes for the chains, ``"auto"`` one per core, ``1`` none; each
        chain is seeded alike either way);
        ``map_hold`` (MAP and the MAP start of SGHMC/SVGD): ``{site: fraction}`` of the MAP
        steps during which a site stays at its starting value (see ``map_fit``), or
        ``"auto"`` to choose by held-out error between none, the model's
        ``map_hold_candidate`` and, for a TT, TT-matrix or Tucker completion, the noise
        precision started at the start's residual (:func:`choose_map_hold`; the fit on all
        the data then starts from the model's start, with the chosen noise start; the choice
        is in ``post.info["map_hold_auto"]``); defaults to the model's ``map_hold``. For
        very noisy completion, ``{"noise_precision": 0.1}`` keeps the joint MAP from fitting
        the noise with extra slices (see ``docs/completion.md``).

    Returns
    -------
    Posterior

    Raises
    ------
    ValueError
        Before any work: unknown method or option, a setting the method does not take
        (``checkpoint`` / ``resume`` outside SGHMC and SVGD, ``batches`` outside SGHMC and
        SVGD), non-positive sizes or step sizes, numbers given as strings, a non-bool flag, a
        seed outside ``[0, 2**63 - 1]``, an unavailable device, a checkpoint path that cannot
        be written, a missing resume file. Later: bad data, discrete latents, unknown sites in
        ``init``, a checkpoint of another run.
    RunInterrupted
        Ctrl-C / SIGTERM during SGHMC or SVGD; carries the draws so far (SVGD: the particles
        where the run stopped).
    DivergenceError
        A non-finite log density; carries the draws so far.
    """
    where = check_device(device)
    default = fit_default_method(model, batch_size, where)
    spec = _method(method or default)
    if thin is None:
        thin = model.sghmc_thin if isinstance(model, BayesModel) else 1
    samples_given = num_samples is not None
    num_samples, num_chains, groups = _check_settings(
        spec, num_samples=num_samples, num_chains=num_chains, thin=thin, batch_size=batch_size,
        num_warmup=num_warmup, seed=seed, init=init, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every, resume=resume, batches=batches, device=device,
        backend=backend, chain_groups=chain_groups, options=options)
    spec.settle_options(options, FitPlan(
        model=model, num_samples=num_samples, samples_given=samples_given,
        num_chains=num_chains, chain_groups=groups, batch_size=batch_size, device=where,
        init=init))
    # once, not per chain group; the choice may start the noise precision at the residual
    hold_choice, init = resolve_map_hold(model, data, spec, seed, batch_size, options,
                                         progress and groups is None, init=init)
    common = dict(num_samples=num_samples, num_warmup=num_warmup, thin=thin,
                  batch_size=batch_size, batches=batches, init=init, model_args=model_args,
                  model_kwargs=model_kwargs, device=device)
    if groups is not None:
        post = fit_chain_groups(spec, model, data, num_chains=num_chains, groups=groups,
                                seed=seed, backend=backend, address=address, progress=False,
                                options=options, **common)
    else:
        post = run_method(spec, model, data, options=options, seed=seed,
                          num_chains=num_chains, progress=progress, checkpoint=checkpoint,
                          checkpoint_every=checkpoint_every, resume=resume, **common)
    if hold_choice is not None:
        post.info["map_hold_auto"] = hold_choice
    post = _attach_user_model(post, model, model_args, model_kwargs)
    message = unconverged_message(post)
    if message is not None:
        warnings.warn(message, ChainsNotConvergedWarning, stacklevel=2)
    saturated = saturated_message(post)
    if saturated is not None:
        warnings.warn(saturated, SaturatedDrawsWarning, stacklevel=2)
    return post


def _attach_user_model(post: Posterior, model, model_args, model_kwargs) -> Posterior:
    """A user's Pyro model and its data stay with the posterior (pointwise log-likelihood)."""
    if post.model is None and callable(model):
        post.attach_model(model, model_args, model_kwargs)
    return post


def _independent_runs(spec: Method, num_chains: int, chain_groups) -> int | None:
    """``chain_groups`` for a method without batched chains (VI, SVGD): each of several chains
    is an independent run (a group of its own), as with Ray, not silently one run."""
    if spec.chains or num_chains == 1:
        return chain_groups
    if chain_groups is not None and chain_groups != num_chains:
        raise ValueError(f"chain_groups: method {spec.name!r} runs each chain as an independent "
                         f"fit, so chain_groups must equal num_chains ({num_chains}), got "
                         f"{chain_groups!r}")
    return num_chains


def _method(method) -> Method:
    """The registry entry for ``method`` (case-insensitive)."""
    name = str(method).lower()
    if name not in METHODS:
        raise ValueError(f"method: expected one of {tuple(METHODS)}, got {method!r}")
    return METHODS[name]


def _check_settings(spec: Method, *, num_samples, num_chains, thin, batch_size, num_warmup,
                    seed, init, checkpoint, checkpoint_every, resume, batches, device, backend,
                    chain_groups, options) -> tuple[int, int, int | None]:
    """Every check of ``fit``'s settings, before any work.

    Returns ``num_samples`` and ``num_chains`` (the method's defaults filled in) and the number of
    chain groups (``None`` for one local fit).
    """
    choice("backend", backend, ("local", "ray"))
    _check_used(spec, num_samples=num_samples, num_warmup=num_warmup)
    num_samples = (spec.default_samples if num_samples is None
                   else positive_int("num_samples", num_samples, minimum=spec.min_samples))
    num_chains = (spec.default_chains if num_chains is None
                  else positive_int("num_chains", num_chains))
    positive_int("thin", thin)
    if batch_size is not None:
        positive_int("batch_size", batch_size)
    if num_warmup is not None:
        positive_int("num_warmup", num_warmup, minimum=0)
    positive_int("checkpoint_every", checkpoint_every)
    seed_value(seed)
    chain_groups = _independent_runs(spec, num_chains, chain_groups)
    if not (isinstance(init, dict) or init in INIT_NAMES):
        shown = repr(init) if isinstance(init, str) else type(init).__name__
        raise ValueError(f"init: expected one of {', '.join(map(repr, INIT_NAMES))} or a dict "
                         f"of site -> value, got {shown}")
    _check_applies(spec, checkpoint, resume, batches)
    spec.check_options(options)
    check_device(device)
    if checkpoint is not None:
        check_checkpoint_path(checkpoint)
    if resume is not None:
        check_resume_path(resume)
    if backend == "local" and (chain_groups is None or chain_groups == 1):
        return num_samples, num_chains, None
    if resume is not None or checkpoint is not None:
        raise ValueError("checkpoint: not supported with chain groups; checkpoint each "
                         "group's fit instead")
    groups = positive_int("chain_groups", num_chains if chain_groups is None else chain_groups)
    group_sizes(num_chains, groups)
    return num_samples, num_chains, groups


#: Sizes that only some methods use: any other method refuses them (it would ignore them).
SIZE_METHODS = {"num_samples": ("vi", "nuts", "sghmc", "svgd"), "num_warmup": ("nuts", "sghmc")}


def _check_used(spec: Method, **given) -> None:
    """Refuse a size given to a method that does not use it (MAP's one point takes no
    ``num_samples``; only the samplers with a burn-in take ``num_warmup``)."""
    for name, value in given.items():
        if value is not None and spec.name not in SIZE_METHODS[name]:
            raise ValueError(f"{name}: applies to {', '.join(SIZE_METHODS[name])}, not "
                             f"{spec.name!r}, which would ignore it")


def _check_applies(spec: Method, checkpoint, resume, batches) -> None:
    """Refuse general settings the method would otherwise ignore."""
    if not spec.resumable:
        for name, value in (("resume", resume), ("checkpoint", checkpoint)):
            if value is not None:
                resumable = [m.name for m in METHODS.values() if m.resumable]
                raise ValueError(f"{name}: only {' and '.join(resumable)} runs write checkpoints "
                                 f"and can be resumed, not {spec.name!r}")
    if batches is not None and not spec.takes_batches:
        raise ValueError(f"batches: method {spec.name!r} does not take mini-batches of model "
                         "arguments; use batch_size, or sghmc / svgd")
