"""Pyro distributions that ``torch.func.vmap`` cannot batch, made batchable for the length of
a batched log joint.

:class:`~bayestensor.infer.log_density.LogDensity` evaluates a user's Pyro model for every
chain (or particle) at once under ``torch.func.vmap``, and :mod:`bayestensor.results.pointwise`
scores its observations for many posterior draws at once the same way. Two common likelihoods
defeat it by their code, not their mathematics:

* ``Multinomial.log_prob`` sets the ``0 * log 0`` terms to zero by boolean-mask assignment,
  an operation whose output shape depends on the data, which ``vmap`` refuses;
* ``OrderedLogistic.__init__`` writes the batched category probabilities, in place, into a
  buffer made without the batch dimension, which ``vmap`` refuses too.

A model with either used to run one chain at a time (a Python loop: SVGD at its defaults 10x
slower on a 200-observation multinomial regression, ``benchmarks/batchable_likelihoods.py``).
:func:`batchable_distributions` swaps in, for its duration, a ``Multinomial.log_prob`` that
masks with ``torch.where`` and an
``OrderedLogistic.__init__`` that assembles the probabilities with ``torch.cat``: the same
values (``tests/test_batchable.py`` checks them against the originals), in operations
``vmap`` batches. The originals are restored on exit. Written here because the two classes
are torch's and Pyro's; the change belongs upstream, and this module goes when it lands there.

Other distributions that ``vmap`` refuses still take the loop, with the warning
:class:`LogDensity` gives: of about 50 of torch's and Pyro's distributions tried, Pyro's
``Stable`` (its log density branches on its parameters' values), ``DiscreteHMM`` (an autograd
function without a batching rule) and ``GaussianHMM`` (it reads ``.data``).
"""

from __future__ import annotations

import contextlib
import math

import torch
from pyro.distributions import OrderedLogistic
from pyro.distributions.torch import Categorical
from torch.distributions import Multinomial
from torch.distributions.utils import broadcast_all


def multinomial_log_prob(self, value: torch.Tensor) -> torch.Tensor:
    """``torch.distributions.Multinomial.log_prob``, its ``0 * log 0`` terms set to zero by
    ``torch.where`` instead of boolean-mask assignment.

    Parameters
    ----------
    self : torch.distributions.Multinomial
        The distribution (this function stands in for its method).
    value : torch.Tensor
        Counts, ``batch_shape + event_shape``.

    Returns
    -------
    torch.Tensor
        The log probability mass, ``batch_shape``: the original's values.
    """
    if self._validate_args:
        self._validate_sample(value)
    logits, value = broadcast_all(self.logits, value)
    zero_times_log_zero = (value == 0) & (logits == -math.inf)
    logits = torch.where(zero_times_log_zero, torch.zeros_like(logits), logits)
    log_factorial_n = torch.lgamma(value.sum(-1) + 1)
    log_factorial_xs = torch.lgamma(value + 1).sum(-1)
    return log_factorial_n - log_factorial_xs + (logits * value).sum(-1)


def ordered_logistic_init(self, predictor: torch.Tensor, cutpoints: torch.Tensor,
                          validate_args=None) -> None:
    """``pyro.distributions.OrderedLogistic.__init__`` with the category probabilities
    assembled by ``torch.cat`` instead of in-place writes into an unbatched buffer.

    Parameters
    ----------
    self : pyro.distributions.OrderedLogistic
        The distribution being built (this function stands in for its constructor).
    predictor : torch.Tensor
        The latent predictor, ``batch_shape``.
    cutpoints : torch.Tensor
        Ordered cutpoints, ``(..., K - 1)`` for ``K`` categories.
    validate_args : bool, optional
        As the original's.
    """
    cumulative = torch.sigmoid(cutpoints - predictor.unsqueeze(-1))
    self.predictor = predictor.expand(cumulative.shape[:-1])
    self.cutpoints = cutpoints.expand(cumulative.shape)
    probs = torch.cat([cumulative[..., :1], cumulative[..., 1:] - cumulative[..., :-1],
                       1 - cumulative[..., -1:]], dim=-1)
    Categorical.__init__(self, probs, validate_args=validate_args)


#: (class, attribute, stand-in) for every method :func:`batchable_distributions` swaps.
STAND_INS = ((Multinomial, "log_prob", multinomial_log_prob),
             (OrderedLogistic, "__init__", ordered_logistic_init))


@contextlib.contextmanager
def batchable_distributions():
    """Swap in the batchable stand-ins of :data:`STAND_INS` for the block's duration.

    Used around ``torch.func.vmap`` of a model's trace (see the module docstring). The swap
    is of class attributes, so it is seen by every thread while it lasts; the stand-ins
    compute the originals' values, so code elsewhere that meets them gets the same numbers.
    Nested use in one thread is safe: each exit restores what its entry found. (Across threads
    an exit can restore an original while another thread is inside; its ``vmap`` then fails
    and the log density falls back to the loop, with its warning: slower, not wrong.)

    Examples
    --------
    >>> import torch, pyro.distributions as dist
    >>> from bayestensor.batchable import batchable_distributions
    >>> logits = torch.randn(3, 4)  # three chains' logits
    >>> counts = torch.tensor([2.0, 0.0, 1.0, 1.0])
    >>> def log_prob(chain_logits):
    ...     return dist.Multinomial(4, logits=chain_logits).log_prob(counts)
    >>> with batchable_distributions():
    ...     batched = torch.func.vmap(log_prob)(logits)
    >>> looped = torch.stack([log_prob(chain_logits) for chain_logits in logits])
    >>> bool(torch.allclose(batched, looped))
    True
    """
    found = [(cls, name, cls.__dict__[name]) for cls, name, _ in STAND_INS]
    try:
        for cls, name, stand_in in STAND_INS:
            setattr(cls, name, stand_in)
        yield
    finally:
        for cls, name, original in found:
            setattr(cls, name, original)
