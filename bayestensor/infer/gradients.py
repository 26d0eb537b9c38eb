"""The mini-batch gradient estimator shared by SGHMC, SVGD and the curvature probes.

Step ``t`` of a sampler sees one batch of the data: the user's ``batches[t % len(batches)]``
(model-argument tuples, cycled through) or, when none are given, a fresh sub-sample of the
model's sub-sampled plates (``batch_size`` entries, or the plate's own ``subsample_size``).
:class:`GradientEstimator` makes that choice in one place and evaluates the log density, its
gradient or a Hessian-diagonal probe on it.
"""

from __future__ import annotations

from typing import Iterable

import torch

from bayestensor.infer.log_density import LogDensity


class GradientEstimator:
    """Mini-batch log density, gradient and Hessian diagonal of a :class:`LogDensity`.

    Parameters
    ----------
    target : LogDensity
        The model's batched log density.
    batch_size : int, optional
        Sub-sample size of the model's sub-sampled plates (the plates' own when ``None``).
    batches : iterable, optional
        Mini-batches given as model-argument tuples (a single argument may be given bare);
        step ``t`` uses ``batches[t % len(batches)]`` instead of a sub-sample.
    """

    def __init__(self, target: LogDensity, batch_size: int | None = None,
                 batches: Iterable | None = None):
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        self.target = target
        self.batch_size = batch_size
        self.batches = None if batches is None else [b if isinstance(b, tuple) else (b,)
                                                     for b in batches]
        if self.batches is not None and not self.batches:
            raise ValueError("batches: expected a non-empty iterable of model-argument tuples")

    @property
    def is_stochastic(self) -> bool:
        """Whether two calls at the same point may see different data."""
        return self.batches is not None or bool(self.target.subsample_plates)

    def batch(self, t: int) -> dict:
        """Keyword arguments selecting step ``t``'s data for the :class:`LogDensity` methods."""
        if self.batches is not None:
            return {"model_args": self.batches[t % len(self.batches)]}
        return {"subsample": self.target.draw_subsample(self.batch_size)}

    def value_and_grad(self, theta: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Log density ``(C,)`` and gradient ``(C, D)`` at ``theta`` on step ``t``'s batch.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains (or particles).
        t : int
            Step number: selects the data as :meth:`batch` does (``batches[t % len(batches)]``,
            or else a fresh sub-sample of the sub-sampled plates, whatever ``t`` is).

        Returns
        -------
        log_density : torch.Tensor
            Shape ``(C,)``, detached: the mini-batch estimate of the unconstrained log density
            (see :meth:`LogDensity.value_and_grad`).
        grad : torch.Tensor
            Shape ``(C, D)``: its gradient with respect to ``theta``.
        """
        return self.target.value_and_grad(theta, **self.batch(t))

    def full_gradient(self, theta: torch.Tensor) -> torch.Tensor | None:
        """The gradient ``(C, D)`` on all the data, or ``None`` where that is not defined here.

        Without mini-batches it is :meth:`value_and_grad`'s. With one sub-sampled plate its
        observations are taken in order, in chunks of the run's batch size (so memory stays at
        a step's), and the chunks' estimates, each scaled to the whole plate by Pyro, are
        averaged with weights ``chunk / N``: the prior counted once and every observation once.
        A user's ``batches`` (whose union and scaling the model alone knows) or several
        sub-sampled plates give ``None``, as does a Pyro model's plate whose size is not a
        multiple of its ``subsample_size``: Pyro takes index sets of that size only, and a
        short last chunk cannot be made up without counting observations twice.
        """
        plates = self.target.subsample_plates
        if self.batches is not None or len(plates) > 1:
            return None
        if not plates:
            return self.target.value_and_grad(theta)[1]
        (name, (size, sub)), = plates.items()
        chunk = sub if self.batch_size is None else min(int(self.batch_size), size)
        if size % chunk and self.target.fast_log_joint is None:
            return None
        total = torch.zeros_like(theta)
        for start in range(0, size, chunk):
            index = torch.arange(start, min(start + chunk, size), device=theta.device)
            total += len(index) / size * self.target.value_and_grad(theta, {name: index})[1]
        return total

    def hessian_diag(self, theta: torch.Tensor, t: int, num_probes: int) -> torch.Tensor:
        """Hutchinson estimate ``(D,)`` of ``diag(-Hessian)`` on step ``t``'s batch.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains (or particles).
        t : int
            Step number: selects the data as :meth:`batch` does (``batches[t % len(batches)]``,
            or else a fresh sub-sample of the sub-sampled plates, whatever ``t`` is).
        num_probes : int
            Rademacher probes of the estimate (see :meth:`LogDensity.hessian_diag`).

        Returns
        -------
        torch.Tensor
            Shape ``(D,)``: the estimate averaged over probes and chains.
        """
        return self.target.hessian_diag(theta, num_probes, **self.batch(t))

    def hessian(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        """Exact ``-Hessian`` ``(D, D)``, averaged over chains, on step ``t``'s batch.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains (or particles).
        t : int
            Step number: selects the data as :meth:`batch` does (``batches[t % len(batches)]``,
            or else a fresh sub-sample of the sub-sampled plates, whatever ``t`` is).

        Returns
        -------
        torch.Tensor
            Shape ``(D, D)``, symmetric (see :meth:`LogDensity.hessian`).
        """
        return self.target.hessian(theta, **self.batch(t))
