"""Exact Gibbs redraws, inside SGHMC, of the sites whose full conditional is known in closed form.

A precision ``tau`` with a ``Gamma(a, b)`` prior that enters the rest of the model as
``(m / 2) log tau - tau * S / 2`` (a Gaussian noise or slice precision) has the full conditional
``Gamma(a + m / 2, b + S / 2)``. Its shape is known from the model's structure; its rate depends
on the other parameters. SGHMC samples ``u = log tau``, where the log density (with the
Jacobian ``u``) has the gradient ``g = shape - tau * rate``, so the rate is
``(shape - g) / tau``: read off the gradient the sampler has already computed, with no
model-specific code
(:class:`~bayestensor.priors.conditionals.GammaConditional`).

A slice scale ``s ~ HalfCauchy(A)`` whose variance ``s^2`` scales ``m`` Gaussian entries has no
closed-form conditional, but it has one with an auxiliary variable (Makalic & Schmidt, "A
simple sampler for the horseshoe estimator", IEEE Signal Processing Letters 2016): with
``s^2 | nu ~ InvGamma(1/2, 1 / nu)`` and ``nu ~ InvGamma(1/2, 1 / A^2)``, ``s`` is half-Cauchy,
``nu | s ~ InvGamma(1, 1 / A^2 + 1 / s^2)`` and ``s^2 | nu, rest ~ InvGamma((m + 1) / 2,
1 / nu + S / 2)``. Drawing ``nu`` afresh and then ``s`` leaves ``s``'s conditional invariant;
``S`` is again read off the gradient
(:class:`~bayestensor.priors.conditionals.HalfCauchyConditional`).

A slice scale ``s ~ LogUniform(low, high)`` has precision ``1 / s^2`` with prior ``∝ 1 /
precision`` on ``[high^-2, low^-2]``, hence the conditional ``Gamma(m / 2, S / 2)`` truncated
to it (:class:`~bayestensor.priors.conditionals.LogUniformConditional`). That site is sampled
through a bounded transform (``u = logit((s - low) / (high - low))``), not ``log s``: its
gradient is carried over to ``log s`` through the transform's Jacobian
(:func:`log_scale_gradient`), and the new scale back to ``u`` through the transform's
inverse.

Why: such a precision or scale is tied to a collective quantity (the residual sum of squares, a
slice's size) that moves slowly under small gradient steps, and it forms a curved valley with
its slices. In ``benchmarks/sghmc_mixing.py grid`` (4 x 1000 draws) the Gamma redraws raised
the smallest bulk ESS of 200 held-out entries of a 30^3 TT completion (gamma prior) from
186-310 to 581-648 (3 seeds), and the noise precision's ESS on a 50^3 CP completion at 20 dB
from 147-153 to 877-1010. A redraw is a Gibbs step: it leaves the joint distribution of
positions and velocities invariant, as the velocities do not depend on the positions.

Sites whose conditionals depend on each other are redrawn in turn, not together: a Tucker core
entry's prior variance is the product of one slice variance per mode, so each mode's rate
depends on the other modes' current values. Drawn together from one gradient they are a
Jacobi update, which leaves no distribution of interest invariant; on a 20^3 tensor of pure
noise (half-Cauchy prior) the three scales of a core entry moved up together, then down
together, by about e^7 a redraw, until the log density overflowed in float32 (DivergenceError
on one seed of three). Each conditional carries a ``stage``; the sites of one stage (which
must not depend on each other) are drawn from one gradient, and the gradient is evaluated
again before the next (:meth:`LowRankPrior.redraw_stages
<bayestensor.priors.LowRankPrior.redraw_stages>`: one stage for CP, two for TT, N for an
N-way Tucker).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import transforms

from bayestensor.infer.log_density import LogDensity
from bayestensor.priors.conditionals import OffsetConditional, conditional

#: SGHMC steps between redraws. Each costs one more log-density evaluation (a quarter more
#: work at 4).
GIBBS_EVERY = 4


def _elementwise(transform):
    """The transform without its ``IndependentTransform`` wrappers."""
    while isinstance(transform, transforms.IndependentTransform):
        transform = transform.base_transform
    return transform


def _parts(transform) -> list:
    """The elementwise transform's steps in order (one step unless it is a composition)."""
    transform = _elementwise(transform)
    return list(transform.parts) if isinstance(transform, transforms.ComposeTransform) \
        else [transform]


def _is_exp(transform) -> bool:
    """Whether the site's unconstrained value is the log of its value (``exp``, possibly
    followed by an identity affine map, as ``biject_to(positive)`` builds it)."""
    parts = _parts(transform)
    if not parts or not isinstance(parts[0], transforms.ExpTransform):
        return False
    return all(isinstance(p, transforms.AffineTransform)
               and bool(torch.all(torch.as_tensor(p.loc) == 0))
               and bool(torch.all(torch.as_tensor(p.scale) == 1)) for p in parts[1:])


def _positive_interval(transform) -> bool:
    """Whether the site's value is ``loc + scale * sigmoid(u)`` with ``loc >= 0`` and
    ``scale > 0`` (``biject_to(interval(low, high))`` on positive bounds, a log-uniform
    scale's)."""
    parts = _parts(transform)
    if len(parts) != 2 or not isinstance(parts[0], transforms.SigmoidTransform) \
            or not isinstance(parts[1], transforms.AffineTransform):
        return False
    return bool(torch.all(torch.as_tensor(parts[1].loc) >= 0)
                and torch.all(torch.as_tensor(parts[1].scale) > 0))


def log_scale_gradient(transform, u: torch.Tensor, grad: torch.Tensor):
    """``(x, gradient on log x)`` (double) of a positive site from its unconstrained values
    ``u`` and the log density's gradient on them, through an elementwise transform ``x =
    T(u)``: with ``J = dx / du``, ``d/dx (log density) = (grad - d log J / du) / J``, and on
    ``log x`` (Jacobian ``x``) the gradient is ``x * that + 1``. For ``T = exp`` that is
    ``grad`` itself.

    Parameters
    ----------
    transform : torch.distributions.Transform
        The site's transform from unconstrained to constrained values (elementwise, possibly
        wrapped in an ``IndependentTransform``).
    u, grad : torch.Tensor
        Unconstrained values and the log density's gradient on them, the same shape.

    Returns
    -------
    tuple of torch.Tensor
        ``x`` and the gradient on ``log x``, in double precision.
    """
    if _is_exp(transform):
        return u.double().exp(), grad.double()
    base = _elementwise(transform)
    u = u.detach().double().requires_grad_()
    with torch.enable_grad():
        x = base(u)
        log_jacobian = base.log_abs_det_jacobian(u, x)
        (slope,) = torch.autograd.grad(log_jacobian.sum(), u)
    x, log_jacobian = x.detach(), log_jacobian.detach()
    return x, x * (grad.double() - slope) / log_jacobian.exp() + 1


def unconstrained(transform, x: torch.Tensor) -> torch.Tensor:
    """The unconstrained value ``T^-1(x)`` of a positive site's value ``x``.

    Parameters
    ----------
    transform : torch.distributions.Transform
        The site's transform, as in :func:`log_scale_gradient`.
    x : torch.Tensor
        Positive values inside the transform's codomain.

    Returns
    -------
    torch.Tensor
        ``log x`` for the exponential transform, else the transform's inverse.
    """
    return x.log() if _is_exp(transform) else _elementwise(transform).inv(x)


def _span(site) -> slice:
    return slice(site.offset, site.offset + site.size)


def exact_curvature_spans(target: LogDensity, shapes: dict) -> list:
    """``[(span, shape)]`` of the sites in ``shapes`` (SGHMC's ``exact_curvature``): each a
    site of ``target`` sampled as the log of a positive value, with a positive shape;
    ``ValueError`` naming the site otherwise."""
    sites = {s.name: s for s in target.sites}
    spans = []
    for name, shape in shapes.items():
        if name not in sites or not _is_exp(sites[name].transform):
            raise ValueError(f"exact_curvature: {name!r} is not a site of the model sampled as "
                             f"the log of a positive value")
        if not float(shape) > 0:
            raise ValueError(f"exact_curvature: the shape of {name!r} must be positive, got "
                             f"{shape!r}")
        spans.append((_span(sites[name]), float(shape)))
    return spans


def _offset_noise_span(sites: dict, name: str, spec: OffsetConditional) -> slice:
    """The span of an offset's noise site, after checking the offset (a real site sampled as
    itself, a valid conditional) and its noise site (positive, sampled as its log)."""
    spec.check(name)
    if sites[name].transform != transforms.identity_transform:
        raise ValueError(f"gibbs: site {name!r} is not sampled as itself, so its Normal "
                         f"conditional cannot be redrawn")
    noise = sites.get(spec.noise_site)
    if noise is None or not _is_exp(noise.transform):
        raise ValueError(f"gibbs: the noise site {spec.noise_site!r} of {name!r} is not a "
                         f"positive site of the model sampled as its log")
    return _span(noise)


class GibbsRedraws:
    """Redraws the sites named in ``conditionals`` from their full conditionals.

    Parameters
    ----------
    target : LogDensity
        The log density SGHMC samples; each named site must be one of its sites, positive
        with a log as unconstrained value (Pyro's default for a positive prior) or through a
        sigmoid onto a positive interval (a log-uniform scale's).
    conditionals : dict of str to float or conditional
        Per site, a conditional of :mod:`bayestensor.priors.conditionals`; a number
        stands for the shape of a Gamma conditional (e.g. ``noise_a + n / 2`` for a Gaussian
        noise precision over ``n`` observations). An ``OffsetConditional`` names a real site
        (sampled as itself), redrawn after the positive ones.

    Raises
    ------
    ValueError
        A name that is not a site of ``target``, a site sampled neither on the log scale nor
        through a positive interval, or a
        shape, count or scale that is not a positive number.
    """

    def __init__(self, target: LogDensity, conditionals: dict):
        sites = {s.name: s for s in target.sites}
        self.spans, self.offsets, self.transforms = [], [], []
        offset_names = []
        for name, spec in conditionals.items():
            if name not in sites:
                raise ValueError(f"gibbs: {name!r} is not a site of the model; its sites are "
                                 f"{sorted(sites)}")
            if isinstance(spec, OffsetConditional):
                self.offsets.append((_span(sites[name]), _offset_noise_span(sites, name, spec),
                                     spec))
                offset_names.append(name)
                continue
            transform = sites[name].transform
            if not (_is_exp(transform) or _positive_interval(transform)):
                raise ValueError(f"gibbs: site {name!r} is not sampled as the log of a positive "
                                 f"value or through a positive interval, so its conditional "
                                 f"cannot be redrawn")
            try:
                cond = conditional(spec)
            except (TypeError, ValueError):
                raise ValueError(f"gibbs: the shape of {name!r} must be a positive number, "
                                 f"got {spec!r}") from None
            cond.check(name)
            self.spans.append((_span(sites[name]), cond))
            self.transforms.append(transform)
        # in redraw order: the positive sites, then the offsets (drawn given their new noise)
        self.names = [n for n in conditionals if n not in offset_names] + offset_names
        self.conditionals = [cond for _, cond in self.spans] + [c for _, _, c in self.offsets]
        self.any_during_warmup = any(cond.during_warmup for cond in self.conditionals)
        self.all_during_warmup = all(cond.during_warmup for cond in self.conditionals)

    def describe(self) -> dict:
        """``{site: plain description of its conditional}``, for run records."""
        return {name: cond.describe() for name, cond in zip(self.names, self.conditionals)}

    def redraw(self, theta: torch.Tensor, grad: torch.Tensor, generator: torch.Generator,
               warmup: bool = False, gradient=None) -> torch.Tensor:
        """``theta`` ``(C, D)`` with each site redrawn from its conditional at the others.

        ``grad`` is the full-data gradient of the log density at ``theta``. The positive
        sites are redrawn stage by stage (their conditionals' ``stage``, ascending); each later
        stage reads its rates off ``gradient(theta)``, the gradient after the stages before,
        since its conditional may depend on their new values (a sequential Gibbs scan;
        ``gradient`` is needed only when there are several stages). In burn-in (``warmup``)
        only the conditionals whose ``during_warmup`` is true are redrawn. An element whose
        new value is not a positive finite number keeps its value. The draws come from
        NumPy's samplers seeded from ``generator``, so a run is reproducible from its seed and
        resumes exactly (torch's Gamma sampler takes no generator).
        """
        before, stage_grad = theta, grad
        theta = theta.clone()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        rng = np.random.default_rng(seed)
        due = [(span, cond, transform) for (span, cond), transform
               in zip(self.spans, self.transforms) if not warmup or cond.during_warmup]
        stages = sorted({cond.stage for _, cond, _ in due})
        if len(stages) > 1 and gradient is None:
            raise ValueError(f"gibbs: conditionals in stages {stages} need gradient, the "
                             "log density's gradient as a function of theta")
        for k, stage in enumerate(stages):
            if k:
                stage_grad = gradient(theta)
            for span, cond, transform in due:
                if cond.stage != stage:
                    continue
                u = theta[:, span]
                x, log_grad = log_scale_gradient(transform, u.cpu(), stage_grad[:, span].cpu())
                new = unconstrained(transform, cond.draw(x, log_grad, rng)).to(u.device)
                theta[:, span] = torch.where(torch.isfinite(new), new.to(u.dtype), u)
        for span, noise, cond in self.offsets:
            if warmup and not cond.during_warmup:
                continue
            c = before[:, span]
            new = cond.draw(c.double().cpu(), grad[:, span].double().cpu(),
                            before[:, noise].double().exp().cpu(),
                            theta[:, noise].double().exp().cpu(), rng).to(c.device)
            theta[:, span] = torch.where(torch.isfinite(new), new.to(c.dtype), c)
        return theta
