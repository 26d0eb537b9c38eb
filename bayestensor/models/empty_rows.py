"""Exact redraws of the parameter slices that no observed entry reads (rows the data leave empty).

A completion whose data never reach index ``i`` of mode ``m`` (a user or item never observed,
a slice of the tensor all missing) has parameter slices nothing in the likelihood depends on:
row ``i`` of a CP or Tucker factor, the slice ``G_m[:, i, :]`` of a TT core, the row or column
slab of a TT-matrix core. Their full conditional is their prior given the slice variances,
independent ``Normal(0, s^2)`` entries with ``s`` the product prior's std
(:meth:`~bayestensor.priors.LowRankPrior.entry_std`), whatever the noise, the offset and the
other parameters. SGHMC alone moves them by a random walk under that Gaussian, so the entries
they make, whose intervals are the prior's, mix slowly; a redraw draws them afresh at no cost.
It is a Gibbs step on those coordinates, which leaves the posterior invariant.

Why by hand: Pyro has no Gibbs step for a block of a site, and the block is found from the
observed indices and the format's :meth:`~bayestensor.formats.LowRankTensor.index_axes`.
"""

from __future__ import annotations

import torch


class EmptyRows:
    """Redraws of a low-rank tensor's parameter slices that no observed entry reads.

    ``SGHMC`` runs it by default on a built-in completion whose data leave rows empty
    (``factor_redraws="auto"``; ``post.info["empty_row_redraws"]``), on full batches and
    mini-batches alike (the conditional reads no data) and on any device.

    Parameters
    ----------
    prior : LowRankPrior
        The tensor's prior: its parameter sites, their specs, the hyper sites and
        ``entry_std``.
    empty : list of torch.Tensor
        Per mode of the tensor, the indices no observed entry has along it.

    Examples
    --------
    >>> import torch
    >>> from bayestensor.priors import LowRankPrior
    >>> prior = LowRankPrior("X", (3, 4), 2, "tucker")
    >>> redraws = EmptyRows.of(torch.tensor([[0, 0], [1, 3]]), prior)
    >>> [rows.tolist() for rows in redraws.empty]
    [[2], [1, 2]]
    """

    #: The conditional reads no data, so mini-batch runs redraw the rows too.
    needs_full_batch = False
    #: Not in burn-in: no draw is kept there, the first redraw after it is exact, and each
    #: redraw costs a gradient evaluation that burn-in's steps would not otherwise make
    #: (Tucker, whose precisions are redrawn only after burn-in: 8-14% of the fit's time).
    during_warmup = False
    #: The key of ``post.info`` that says the run redrew them.
    info_key = "empty_row_redraws"

    def __init__(self, prior, empty: list):
        self.prior = prior
        self.empty = [torch.as_tensor(rows, dtype=torch.long) for rows in empty]
        # (site, [(axis, rows)]) for every parameter with an axis some empty rows index
        self.blocks = []
        axes_of = prior.format_cls.index_axes(prior.shape)
        for site, axes in zip(prior.param_sites, axes_of):
            slabs = [(axis, self.empty[mode]) for axis, mode in axes.items()
                     if len(self.empty[mode])]
            if slabs:
                self.blocks.append((site, slabs))

    @classmethod
    def of(cls, indices: torch.Tensor, prior) -> "EmptyRows | None":
        """The redraws for observed ``indices`` ``(N, ndim)`` of ``prior``'s tensor, or
        ``None`` where every index of every mode is observed."""
        empty = unobserved_indices(indices, prior.shape)
        return cls(prior, empty) if any(len(rows) for rows in empty) else None

    def redraw(self, values: dict, generator: torch.Generator) -> dict:
        """Batched constrained ``values`` (``(C, ...)`` per site) with the empty slices of
        every parameter drawn from their prior at each chain's slice variances."""
        out = dict(values)
        stds = self.prior.entry_stds(values)
        for site, slabs in self.blocks:
            param = values[site].clone()
            std = stds[site].to(param).expand(param.shape)
            for axis, rows in slabs:
                rows = rows.to(param.device)
                scale = std.index_select(1 + axis, rows)
                noise = torch.randn(scale.shape, generator=generator, dtype=param.dtype,
                                    device=param.device)
                param.index_copy_(1 + axis, rows, noise * scale)
            out[site] = param
        return out


def unobserved_indices(indices: torch.Tensor, shape) -> list[torch.Tensor]:
    """Per mode of a tensor of ``shape``, the indices that no row of the observed ``indices``
    ``(N, ndim)`` has along it (sorted, on the CPU)."""
    idx = indices.detach().cpu().long()
    return [(torch.bincount(idx[:, mode], minlength=size) == 0).nonzero().squeeze(-1)
            for mode, size in enumerate(shape)]
