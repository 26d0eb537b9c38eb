"""Problems and learners that :func:`bayestensor.dynamics.compare` runs replicates of.

A *problem* draws an instance from a seed (``instance(seed)``) and says which final metrics
count as success (``success(final)``). A *learner* trains on an instance with a seed
(``run(instance, seed) -> Trace``); the seed picks its random parts (feedback matrix,
initialization), so two learners run with one seed share them where they have them in common.
Both are small picklable dataclasses: replicates can run in other processes (any executor with
a ``map`` method, e.g. ``ray.util.multiprocessing.Pool``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bayestensor import checks as _checks
from bayestensor.dynamics.bayes_reference import CREDIBLE_LEVEL, bayes_factorization
from bayestensor.dynamics.diagonal import sparse_regression, train_diagonal
from bayestensor.dynamics.factorization import RULES, low_rank_matrix, train_factorization
from bayestensor.dynamics.overparam import VARIANTS, fit_lazy, fit_rich, symmetric_low_rank_tensor


@dataclass
class Trace:
    """What one learner run returns to :func:`compare`.

    Attributes
    ----------
    steps : np.ndarray
        Recorded step numbers (may be empty).
    trajectory : dict of str to np.ndarray
        Metric values aligned with ``steps``.
    final : dict of str to float
        Final metrics.
    unit : {"step", "draw"}
        What ``steps`` count: optimizer updates or posterior draws (plotted on separate axes).
    """

    steps: np.ndarray
    trajectory: dict
    final: dict
    unit: str = "step"


class _Described:
    """Problems and learners describe themselves by their dataclass fields."""

    def describe(self) -> dict:
        """Settings as a plain dict (for the JSON report)."""
        return {"type": type(self).__name__, **asdict(self)}


# --- problems ---------------------------------------------------------------------------------
class _Problem(_Described):
    """Shared rule of the problems: success when ``final[success_metric] < tol``."""

    success_metric = ""

    def success(self, final: dict) -> bool:
        """Whether the run's final ``success_metric`` is below ``tol``."""
        return bool(final.get(self.success_metric, np.inf) < self.tol)


@dataclass
class FactorizationProblem(_Problem):
    """``Y`` of shape ``(n, m)`` and rank ``rank`` (singular values 1 .. ``smallest``), model rank ``r``.

    Success is judged on what a learner produces. A point estimate (GD, FA, FA*) succeeds when
    its final excess error over the Eckart-Young optimum is below ``tol`` (relative, squared).
    A posterior (a final with ``optimum_in_credible``, see
    :func:`~bayestensor.dynamics.bayes_reference.bayes_factorization`) succeeds when the
    Eckart-Young matrix lies in its credible ball: no farther from the posterior mean than
    the credible-level quantile of the draws' distances to it. (A posterior mean under a noise
    model never reaches ``excess < 1e-6``; the question for a posterior is whether the optimum
    is among its plausible values.)

    Attributes
    ----------
    n, m : int
        Shape of ``Y``.
    rank : int
        Rank of ``Y`` before the noise, at most ``min(n, m)``.
    r : int
        Inner dimension of the model ``Z W`` (for a posterior, its maximum rank).
    smallest : float
        Smallest singular value of ``Y`` before the noise: the ``rank`` singular values are
        evenly spaced from 1 down to it (in (0, 1], checked when an instance is drawn).
    noise : float
        Standard deviation of the i.i.d. Gaussian noise added to every entry of ``Y`` (0: none).
    tol : float
        Success threshold of point estimates on the final ``excess``.
    name : str
        Label of the problem: in the progress bar of :func:`compare` and in its description
        (:meth:`describe`) in the report.
    """

    n: int = 30
    m: int = 20
    rank: int = 5
    r: int = 3
    smallest: float = 0.2
    noise: float = 0.0
    tol: float = 1e-6
    name: str = "factorization"

    success_metric = "excess"

    def success(self, final: dict) -> bool:
        """Point estimates: ``excess < tol``; posteriors: the optimum in the credible ball."""
        if "optimum_in_credible" in final:
            return bool(final["optimum_in_credible"] >= 0.5)
        return super().success(final)

    def __post_init__(self):
        for key in ("n", "m", "rank", "r"):
            _checks.positive_int(key, getattr(self, key))
        if self.rank > min(self.n, self.m):
            raise ValueError(f"rank: expected at most min(n, m) = {min(self.n, self.m)}, got {self.rank}")
        _checks.positive_float("smallest", self.smallest)
        _checks.positive_float("noise", self.noise, allow_zero=True)
        _checks.positive_float("tol", self.tol)

    def instance(self, seed: int) -> dict:
        """The target ``Y`` for ``seed``."""
        y = low_rank_matrix(self.n, self.m, self.rank, seed=seed, smallest=self.smallest,
                            noise=self.noise)
        return {"y": y, "r": self.r}

    @property
    def success_rule(self) -> str:
        """The success rule in words."""
        return (f"point estimates: excess < {self.tol:g} (reach the Eckart-Young optimum); "
                "posteriors: the Eckart-Young matrix inside the "
                f"{CREDIBLE_LEVEL:.0%} credible ball around the posterior mean")



@dataclass
class TensorProblem(_Problem):
    """A random symmetric order-``order`` tensor of rank ``r`` in dimension ``d``, fitted with ``m`` components.

    ``m`` defaults to ``5 r``. Success: relative error below ``tol``.

    Attributes
    ----------
    d : int
        Dimension of each mode, at least 2.
    r : int
        Number of true components (independent random unit vectors).
    m : int or None
        Number of model components; ``None`` is replaced by ``5 r`` on construction.
    order : int
        Tensor order, at least 2.
    tol : float
        Success threshold on the final ``error``, ``||T_hat - T||_F / ||T||_F``.
    name : str
        Label of the problem: in the progress bar of :func:`compare` and in its description
        (:meth:`describe`) in the report.
    """

    d: int = 10
    r: int = 2
    m: int | None = None
    order: int = 3
    tol: float = 1e-3
    name: str = "overparam"

    success_metric = "error"

    def __post_init__(self):
        # in dimension 1 the unit components are +-1 and their cubes may cancel to a zero target
        _checks.positive_int("d", self.d, minimum=2)
        _checks.positive_int("r", self.r)
        _checks.positive_int("order", self.order, minimum=2)
        if self.m is None:
            self.m = 5 * self.r
        _checks.positive_int("m", self.m)
        _checks.positive_float("tol", self.tol)

    def instance(self, seed: int) -> dict:
        """Target tensor and its components for ``seed``."""
        t, a = symmetric_low_rank_tensor(self.d, self.r, self.order, seed=seed)
        return {"target": t, "components": a, "m": self.m}

    @property
    def success_rule(self) -> str:
        """The success rule in words."""
        return f"relative error < {self.tol:g}"



@dataclass
class SparseRegressionProblem(_Problem):
    """Under-determined sparse regression ``y = X beta*`` (``n < d``, ``k`` non-zeros).

    Success: the learned ``beta`` is within ``tol`` (relative) of ``beta*``.

    Attributes
    ----------
    n : int
        Samples, the rows of the Gaussian design ``X`` (under-determined for ``n < d``, which
        is not checked).
    d : int
        Features.
    k : int
        Non-zeros of ``beta*``, each ``+1`` or ``-1``; at most ``d`` (checked when an instance
        is drawn).
    noise : float
        Standard deviation of the Gaussian noise added to ``y`` (0: none).
    tol : float
        Success threshold on ``dist_truth``, ``||beta - beta*|| / ||beta*||``.
    name : str
        Label of the problem: in the progress bar of :func:`compare` and in its description
        (:meth:`describe`) in the report.
    """

    n: int = 20
    d: int = 50
    k: int = 3
    noise: float = 0.0
    tol: float = 0.05
    name: str = "sparse_regression"

    success_metric = "dist_truth"

    def __post_init__(self):
        for key in ("n", "d", "k"):
            _checks.positive_int(key, getattr(self, key))
        _checks.positive_float("noise", self.noise, allow_zero=True)
        _checks.positive_float("tol", self.tol)

    def instance(self, seed: int) -> dict:
        """Design, labels and the sparse truth for ``seed``."""
        x, y, beta = sparse_regression(self.n, self.d, self.k, seed=seed, noise=self.noise)
        return {"x": x, "y": y, "beta_star": beta}

    @property
    def success_rule(self) -> str:
        """The success rule in words."""
        return f"||beta - beta*|| / ||beta*|| < {self.tol:g} (sparse truth recovered)"


# --- learners ---------------------------------------------------------------------------------
def _finals(final: dict) -> dict:
    return {k: float(v) for k, v in final.items() if np.ndim(v) == 0}


def _trace(run) -> Trace:
    """The :class:`Trace` of a factorization or tensor run, its divergence flag included."""
    final = _finals(run.final)
    final["diverged"] = float(run.diverged)
    return Trace(run.steps, run.trajectory, final)


@dataclass
class FactorizationLearner(_Described):
    """GD, FA or FA* on a :class:`FactorizationProblem` (see :func:`train_factorization`).

    Attributes
    ----------
    rule : {"gd", "fa", "fa_star"}
        Update rule.
    steps : int
        Number of updates.
    lr : float or None
        Step size; ``None``: ``0.5 / ||Y||_2``.
    init_scale : float or None
        Entries of the starting ``Z`` and ``W`` are ``N(0, init_scale^2 ||Y||_2 / r)``;
        ``None``: 0 for FA and FA*, ``1e-3`` for GD.
    feedback_scale : float or None
        Scale of the random feedback matrix ``B``; ``None``: ``sqrt(||Y||_2)``.
    record_every : int or None
        Record the metrics every this many steps; ``None``: ``steps // 200`` (at least 1).
    name : str or None
        Label of the learner in :func:`compare`, which needs distinct labels; ``None`` is
        replaced on construction by ``"GD"``, ``"FA"`` or ``"FA*"``.
    """

    rule: str = "fa"
    steps: int = 3000
    lr: float | None = None
    init_scale: float | None = None
    feedback_scale: float | None = None
    record_every: int | None = None
    name: str | None = None

    def __post_init__(self):
        _checks.choice("rule", self.rule, RULES)
        _checks.positive_int("steps", self.steps)
        if self.name is None:
            self.name = {"gd": "GD", "fa": "FA", "fa_star": "FA*"}[self.rule]

    def run(self, instance: dict, seed: int) -> Trace:
        """Train on ``instance`` with ``seed`` and return the :class:`Trace`.

        Parameters
        ----------
        instance : dict
            ``{"y": (n, m) target, "r": model rank}``, as
            :meth:`FactorizationProblem.instance` returns it.
        seed : int
            Seeds the feedback matrix and the initialization (see :func:`train_factorization`).

        Returns
        -------
        Trace
            The run's steps and trajectories (the metrics of
            :func:`~bayestensor.dynamics.factorization.factorization_metrics`) and its scalar
            final metrics, plus ``diverged`` (1.0 when the iterates became non-finite, else 0.0).
        """
        out = train_factorization(instance["y"], instance["r"], self.rule, lr=self.lr,
                                  steps=self.steps, init_scale=self.init_scale,
                                  feedback_scale=self.feedback_scale, seed=seed,
                                  record_every=self.record_every)
        return _trace(out)


@dataclass
class BayesReference(_Described):
    """The ARD posterior of the same factorization by SGHMC (:func:`bayes_factorization`).

    Its trajectory is the relative error of each posterior draw (chain 0): its records count
    draws, not optimizer steps (``Trace.unit == "draw"``). Its success is judged by the
    posterior rule of :class:`FactorizationProblem`.

    Attributes
    ----------
    num_samples : int
        SGHMC draws kept (one chain).
    num_warmup : int
        Burn-in steps before the draws.
    lr : float
        SGHMC learning rate (dimensionless: the sampler preconditions).
    prior : {"gamma", "half_cauchy", "log_uniform"}
        ARD hyperprior of the slice variances.
    name : str
        Label of the learner in :func:`compare`, which needs distinct labels.
    """

    num_samples: int = 200
    num_warmup: int = 300
    lr: float = 0.01
    prior: str = "gamma"
    name: str = "Bayes (SGHMC)"

    def run(self, instance: dict, seed: int) -> Trace:
        """Train on ``instance`` with ``seed`` and return the :class:`Trace`.

        Parameters
        ----------
        instance : dict
            ``{"y": (n, m) target, "r": maximum rank}``, as
            :meth:`FactorizationProblem.instance` returns it.
        seed : int
            Seeds the sampler.

        Returns
        -------
        Trace
            ``unit="draw"``: the relative error of each posterior draw of chain 0 along the
            draw indices, and the scalar finals of :func:`bayes_factorization`.
        """
        out = bayes_factorization(instance["y"], instance["r"], seed=seed,
                                  num_samples=self.num_samples, num_warmup=self.num_warmup,
                                  lr=self.lr, prior=self.prior)
        return Trace(out["steps"], out["trajectory"], _finals(out["final"]), unit="draw")


@dataclass
class OverparamLearner(_Described):
    """Rich GD or the lazy (linearized) model on a :class:`TensorProblem`.

    The models and the step sizes are described in :mod:`bayestensor.dynamics.overparam`.

    Attributes
    ----------
    kind : {"rich", "lazy"}
        :func:`~bayestensor.dynamics.overparam.fit_rich` (gradient descent on the components)
        or :func:`~bayestensor.dynamics.overparam.fit_lazy` (the model linearized at the start).
    alpha : float
        Initialization scale relative to the typical component norm (small: rich regime).
    steps : int
        Gradient steps (for ``"lazy"``, those of the recorded trajectory; its final error is
        the least-squares limit).
    variant : {"plain", "wang2020"}
        Parameterization of the components.
    lr_scale : float
        Dimensionless step size of rich GD (``"rich"`` only).
    weight_decay : float
        ``lambda`` of the ``lambda/2 ||W||_F^2`` term (``"rich"`` only; 0: none).
    reinit_every : int or None
        Every this many steps, re-draw the components whose norm is below ``alpha * rho``
        (``"rich"`` only; ``None``: never).
    record_every : int or None
        Record the metrics every this many steps; ``None``: ``steps // 200`` (at least 1).
    name : str or None
        Label of the learner in :func:`compare`, which needs distinct labels; ``None`` is
        replaced on construction by ``"<kind> (alpha=<alpha>)"``, e.g.
        ``"rich (alpha=0.03)"``, with the variant after the kind when it is not ``"plain"``.
    """

    kind: str = "rich"
    alpha: float = 0.03
    steps: int = 1500
    variant: str = "plain"
    lr_scale: float = 0.3
    weight_decay: float = 0.0
    reinit_every: int | None = None
    record_every: int | None = None
    name: str | None = None

    def __post_init__(self):
        _checks.choice("kind", self.kind, ("rich", "lazy"))
        _checks.choice("variant", self.variant, VARIANTS)
        _checks.positive_float("alpha", self.alpha)
        _checks.positive_int("steps", self.steps)
        if self.name is None:
            tag = "" if self.variant == "plain" else f" {self.variant}"
            self.name = f"{self.kind}{tag} (alpha={self.alpha:g})"

    def run(self, instance: dict, seed: int) -> Trace:
        """Train on ``instance`` with ``seed`` and return the :class:`Trace`.

        Parameters
        ----------
        instance : dict
            ``{"target": symmetric tensor, "components": (r, d) true components, "m": number
            of model components}``, as :meth:`TensorProblem.instance` returns it.
        seed : int
            Seeds the initialization (shared by the rich and lazy learners) and, for rich GD,
            the re-initializations.

        Returns
        -------
        Trace
            The ``error`` and ``movement`` trajectories (and ``component_match`` for rich GD),
            the scalar finals of :func:`~bayestensor.dynamics.overparam.fit_rich` /
            :func:`~bayestensor.dynamics.overparam.fit_lazy`, plus ``diverged`` (1.0 or 0.0).
        """
        common = dict(alpha=self.alpha, steps=self.steps, variant=self.variant,
                      components=instance["components"], seed=seed, record_every=self.record_every)
        if self.kind == "rich":
            out = fit_rich(instance["target"], instance["m"], lr_scale=self.lr_scale,
                           weight_decay=self.weight_decay, reinit_every=self.reinit_every, **common)
        else:
            out = fit_lazy(instance["target"], instance["m"], **common)
        return _trace(out)


@dataclass
class DiagonalLearner(_Described):
    """A depth-``depth`` diagonal network at scale ``alpha`` on a :class:`SparseRegressionProblem`.

    Attributes
    ----------
    alpha : float
        Initialization scale: ``w_+`` and ``w_-`` start at ``alpha * 1`` (small: rich regime,
        large: kernel regime).
    depth : int
        Depth ``D >= 2``, with ``beta = w_+^D - w_-^D``.
    steps : int
        Most gradient steps; the run stops earlier once its relative loss
        ``||X beta - y||^2 / ||y||^2`` is at most ``1e-12``.
    lr_scale : float
        Dimensionless step size (see :mod:`bayestensor.dynamics.diagonal`).
    record_every : int or None
        Record the metrics every this many steps; ``None``: ``steps // 200`` (at least 1).
    name : str or None
        Label of the learner in :func:`compare`, which needs distinct labels; ``None`` is
        replaced on construction by ``"D=<depth>, alpha=<alpha>"``.
    """

    alpha: float = 0.01
    depth: int = 2
    steps: int = 20000
    lr_scale: float = 0.5
    record_every: int | None = None
    name: str | None = None

    def __post_init__(self):
        _checks.positive_float("alpha", self.alpha)
        _checks.positive_int("depth", self.depth, minimum=2)
        _checks.positive_int("steps", self.steps)
        if self.name is None:
            self.name = f"D={self.depth}, alpha={self.alpha:g}"

    def run(self, instance: dict, seed: int) -> Trace:
        """Train on ``instance`` with ``seed`` and return the :class:`Trace`.

        Parameters
        ----------
        instance : dict
            ``{"x": (n, d) design, "y": (n,) labels, "beta_star": (d,) truth}``, as
            :meth:`SparseRegressionProblem.instance` returns it.
        seed : int
            Passed to :func:`~bayestensor.dynamics.diagonal.train_diagonal`, where it seeds
            only the initialization jitter, which this learner leaves at 0.

        Returns
        -------
        Trace
            The ``loss`` and ``l1`` trajectories and the finals of
            :func:`~bayestensor.dynamics.diagonal.train_diagonal` for this ``alpha``, plus
            ``dist_truth`` (``||beta - beta*|| / ||beta*||``), ``l1_min`` and ``l1_of_l2``.
        """
        out = train_diagonal(instance["x"], instance["y"], [self.alpha], depth=self.depth,
                             steps=self.steps, lr_scale=self.lr_scale, seed=seed,
                             record_every=self.record_every)
        final = {k: float(np.asarray(v)[0]) for k, v in out.final.items()}
        beta_star = instance["beta_star"]
        final["dist_truth"] = float((out.beta[0] - beta_star).norm() / beta_star.norm())
        final["l1_min"] = out.reference["l1_min"]
        final["l1_of_l2"] = out.reference["l1_of_l2"]
        traj = {k: v[0] for k, v in out.trajectory.items()}
        return Trace(out.steps, traj, final)


__all__ = ["Trace", "FactorizationProblem", "TensorProblem", "SparseRegressionProblem",
           "FactorizationLearner", "BayesReference", "OverparamLearner", "DiagonalLearner"]
