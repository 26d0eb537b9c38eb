"""Tucker format: a core tensor multiplied by a factor matrix along every mode."""

from __future__ import annotations

import string

import numpy as np
import tensorly as tl
import torch

from bayestensor.formats.base import LowRankTensor, ParamSpec, check_modes
from bayestensor.formats.decompose import tucker_start


class TuckerTensor(LowRankTensor):
    """Tucker tensor ``X = G x_1 U_1 x_2 ... x_N U_N``.

    The core ``G`` has shape (R_1, ..., R_N) and factor ``U_n`` shape (I_n, R_n). Rank dimension
    ``n`` has slices ``U_n[:, k]`` and ``G`` sliced at ``k`` along axis ``n``.
    """

    format_name = "tucker"

    @classmethod
    def normalize_rank(cls, shape, rank):
        check_modes("Tucker", shape)
        if isinstance(rank, (list, tuple)):
            if len(rank) != len(shape):
                raise ValueError(f"rank: Tucker needs one rank per mode ({len(shape)}), got {rank}")
            ranks = tuple(int(r) for r in rank)
        else:
            ranks = tuple(int(rank) for _ in shape)
        if any(r < 1 for r in ranks):
            raise ValueError(f"rank: expected positive integers, got {ranks}")
        return ranks

    @classmethod
    def specs(cls, shape, rank):
        ranks = cls.normalize_rank(shape, rank)
        core = ParamSpec("core", ranks, {n: n for n in range(len(ranks))})
        factors = [ParamSpec(f"factor{n}", (int(s), r), {1: n})
                   for n, (s, r) in enumerate(zip(shape, ranks))]
        return [core] + factors

    def _specs_from_params(self):
        ranks = tuple(int(p.shape[-1]) for p in self.params[1:])
        return self.specs(self.shape, ranks)

    @property
    def core(self) -> torch.Tensor:
        return self.params[0]

    @property
    def factors(self) -> list[torch.Tensor]:
        return self.params[1:]

    def reconstruct(self):
        n = self.ndim
        ranks = string.ascii_uppercase[:n]
        modes = string.ascii_lowercase[:n]
        expr = f"...{ranks}," + ",".join(f"...{m}{r}" for m, r in zip(modes, ranks))
        return torch.einsum(expr + f"->...{modes}", self.core, *self.factors)

    def _entries(self, idx):
        n = self.ndim
        ranks = string.ascii_uppercase[:n]
        rows0 = self.factors[0].index_select(-2, idx[:, 0])
        out = torch.einsum(f"...{ranks},...z{ranks[0]}->...z{ranks[1:]}", self.core, rows0)
        for k in range(1, n):
            rows = self.factors[k].index_select(-2, idx[:, k])
            rest = ranks[k + 1:]
            out = torch.einsum(f"...z{ranks[k]}{rest},...z{ranks[k]}->...z{rest}", out, rows)
        return out

    @classmethod
    def from_tensor(cls, tensor, rank, *, mask=None, seed=0, n_iter_max=100):
        shape = np.shape(tensor)
        ranks = cls.normalize_rank(shape, rank)
        return cls(shape, tucker_start(tensor, ranks, mask=mask, n_iter_max=n_iter_max, seed=seed))

    def _to_tensorly(self, params):
        return tl.tucker_tensor.TuckerTensor((params[0], params[1:]))
