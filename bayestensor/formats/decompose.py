"""Starting points for the low-rank formats from a dense tensor: TensorLy's decompositions.

Every decomposition used as a start lives here, so that there is one place where TensorLy is
called, its backend pinned to NumPy (``import tltorch`` switches TensorLy's global backend to
PyTorch), and the result padded and balanced into the layout of a format. The functions return
plain float64 parameter lists; the format classes wrap them in the data's dtype
(``CPTensor.from_tensor``, ...). Starts from observed entries alone, for tensors too large
to hold densely, are in ``entry_start``.

Rank slots a decomposition cannot fill (a rank above what the data or the shape supports)
are padded so that the reconstruction stays exactly the decomposition's, yet no padded slice
is dead for a later gradient-based fit: each padded slice is zero in exactly one parameter
that carries it (a CP factor column, the Tucker core slice, the TT core after the bond) and
small and random in the others. Every product through the slice then contains that zero, but
the gradient with respect to the zero part is the product of the random parts, not zero, so
an optimizer or sampler started here can grow the slice where the data need it. That
gradient is small (``PAD_SCALE`` to the power of the other parameters' count), and under a
shrinkage prior a slice that small is switched off before it grows; so CP, whose rank may
exceed every mode's size, fits all its components instead (:func:`cp_start`), and padding
is left to the slices a format cannot use (Tucker and TT ranks above what the shapes
support) and to all-zero data.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import tensorly as tl
import torch

#: Sd of the random side of a padded rank slice, relative to the mean size of the decomposed
#: parameters (the other side is zero, so the reconstruction is unchanged): large enough for
#: gradients to grow a slice the data need.
PAD_SCALE = 1e-2
#: Ridge added to the ALS normal equations on top of the relative penalty, so that a row with
#: an all-zero Gram matrix still has a unique (zero) solution.
ALS_JITTER = 1e-10
#: Ridge of TensorLy's CP-ALS, relative to the data's mean square, for a second try when the
#: plain ALS meets a singular system (data of lower rank than asked: one or two observed
#: entries, a constant tensor): small enough to leave a well-posed fit unchanged.
CP_RETRY_RIDGE = 1e-6



@contextmanager
def numpy_backend() -> Iterator[None]:
    """TensorLy's NumPy backend in this thread only, the previous backend restored after.

    ``tl.backend_context`` would switch every thread's default backend for the duration and
    set the global default again on the way out; this touches the calling thread alone, so a
    user's backend (``import tltorch`` selects PyTorch) is the same before and after, in this
    thread and in any other.
    """
    previous = tl.get_backend()
    tl.set_backend("numpy", local_threadsafe=True)
    try:
        yield
    finally:
        tl.set_backend(previous, local_threadsafe=True)

def fill_missing(tensor, mask) -> torch.Tensor:
    """Dense float64 tensor with unobserved entries replaced by the observed mean."""
    t = torch.as_tensor(tensor, dtype=torch.float64).clone()
    if mask is None:
        return t
    m = torch.as_tensor(mask, dtype=torch.bool)
    mean = t[m].mean() if bool(m.any()) else torch.tensor(0.0, dtype=torch.float64)
    t[~m] = mean
    return t


def pad_rank(param: torch.Tensor, axis: int, size: int, gen: torch.Generator,
             scale: float) -> torch.Tensor:
    """Pad ``param`` along ``axis`` to ``size`` with random values of sd ``scale`` (or cut it)."""
    have = param.shape[axis]
    if have >= size:
        return param.narrow(axis, 0, size)
    pad_shape = list(param.shape)
    pad_shape[axis] = size - have
    pad = torch.randn(pad_shape, generator=gen, dtype=param.dtype) * scale
    return torch.cat([param, pad], dim=axis)


def balance_cp_factors(factors: list[np.ndarray]) -> list[np.ndarray]:
    """Rescale CP factor columns so every mode carries the same norm for each component.

    The product of the column norms (the component's magnitude) is unchanged. A shared prior
    scale per component then acts on all modes alike.
    """
    norms = np.stack([np.linalg.norm(f, axis=0) for f in factors])  # (N, R)
    norms = np.where(norms > 0, norms, 1.0)
    target = np.exp(np.log(norms).mean(0))
    return [f / n * target for f, n in zip(factors, norms)]


def cp_als(tensor: np.ndarray, rank: int, *, init: str = "svd", mask=None,
           n_iter_max: int = 100, seed: int = 0) -> list[np.ndarray]:
    """CP factors of a dense tensor by TensorLy's ALS (``parafac``), weights absorbed, balanced.

    Parameters
    ----------
    tensor : np.ndarray
        Dense data (missing entries already filled when ``mask`` is given).
    rank : int
        Number of components; ``init="svd"`` gives at most ``min(tensor.shape)``.
    init : {"svd", "random"}
        TensorLy's start of the ALS.
    mask : array_like of bool, optional
        Observed entries (``parafac``'s masked ALS).
    n_iter_max : int
        ALS iterations at most.
    seed : int

    Returns
    -------
    list of np.ndarray
        One ``(I_n, rank)`` float64 factor per mode, with the CP weights multiplied into the
        first factor and the columns balanced across modes (:func:`balance_cp_factors`).
    """
    m = None if mask is None else np.asarray(mask, dtype=bool)
    ridge = CP_RETRY_RIDGE * max(float(np.mean(np.square(tensor))), ALS_JITTER)
    with numpy_backend(), warnings.catch_warnings():
        # a rank above a mode's size: TensorLy says it takes fewer singular vectors there and
        # adds random columns, which is what this start wants
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs",
                                category=UserWarning)
        try:
            weights, factors = tl.decomposition.parafac(
                tl.tensor(tensor), rank=rank, init=init, mask=m, n_iter_max=n_iter_max,
                random_state=seed)
        except np.linalg.LinAlgError:
            weights, factors = tl.decomposition.parafac(
                tl.tensor(tensor), rank=rank, init=init, mask=m, n_iter_max=n_iter_max,
                random_state=seed, l2_reg=ridge)
    factors = [np.asarray(f) for f in factors]
    factors[0] = factors[0] * np.asarray(weights)
    return balance_cp_factors(factors)


def cp_start(tensor, rank: int, *, mask=None, n_iter_max: int = 100,
             seed: int = 0) -> list[torch.Tensor]:
    """CP factors ``(I_n, rank)`` float64 from an SVD-started ALS of mean-filled data.

    Every component is fitted, including those beyond a mode's size: there TensorLy's SVD
    start adds random columns, and the ALS fits them with the others. (Padding them as below
    instead, as this start once did, left them at the padding's scale, ``PAD_SCALE^(N-1)`` of
    the data in each entry for an N-way tensor; the shrinkage prior then switched them off at
    once, so the rank found could not exceed the smallest mode: IL-2's 13 x 4 x 12 x 8 tensor
    came out at rank 4 whatever its max rank.) An all-zero tensor (constant data once
    centred) has nothing to decompose, so its components are padded: zero in the first
    factor, small and random in the others (see the module notes).
    """
    data = fill_missing(tensor, mask).numpy()
    gen = torch.Generator().manual_seed(seed)
    if not np.any(data):
        factors, small = [np.zeros((s, 0)) for s in data.shape], PAD_SCALE
    else:
        factors = cp_als(data, rank, mask=mask, n_iter_max=n_iter_max, seed=seed)
        small = PAD_SCALE * float(np.mean([np.abs(f).mean() for f in factors]))
    return [pad_rank(torch.as_tensor(f, dtype=torch.float64), 1, rank, gen,
                     0.0 if n == 0 else small) for n, f in enumerate(factors)]


def tucker_start(tensor, ranks: Sequence[int], *, mask=None, n_iter_max: int = 100,
                 seed: int = 0) -> list[torch.Tensor]:
    """Tucker ``[core, *factors]`` float64 from TensorLy's SVD-started ``tucker`` (HOOI).

    Ranks beyond a mode's size get small random factor columns and zero core slices (the
    reconstruction is the HOOI fit; see the module notes); the scale is spread evenly between
    the core and the (orthonormal) factors. An all-zero tensor (constant data once centred)
    starts at a zero core with unit-vector factors, without decomposing.
    """
    data = fill_missing(tensor, mask).numpy()
    usable = [min(r, s) for r, s in zip(ranks, data.shape)]
    m = None if mask is None else np.asarray(mask, dtype=bool)
    if not np.any(data):
        core, factors = np.zeros(usable), [np.eye(s)[:, :u] for s, u in zip(data.shape, usable)]
    else:
        with numpy_backend():
            core, factors = tl.decomposition.tucker(
                tl.tensor(data), rank=usable, init="svd", mask=m, n_iter_max=n_iter_max,
                random_state=seed)
    gen = torch.Generator().manual_seed(seed)
    core = torch.as_tensor(core, dtype=torch.float64)
    for n, r in enumerate(ranks):
        core = pad_rank(core, n, r, gen, 0.0)
    # The factors are orthonormal, so PAD_SCALE is already relative to their entries' size.
    factors = [pad_rank(torch.as_tensor(f, dtype=torch.float64), 1, r, gen, PAD_SCALE)
               for f, r in zip(factors, ranks)]
    norm = float(core.norm())
    c_scale = norm ** (1.0 / (data.ndim + 1)) if norm > 0 else 1.0
    factors = [f * c_scale for f in factors]
    core = core / c_scale ** data.ndim
    return [core] + factors


def tt_start(tensor, ranks: Sequence[int], *, mask=None, seed: int = 0) -> list[torch.Tensor]:
    """TT cores float64 from TensorLy's TT-SVD of mean-filled data, padded and balanced.

    Parameters
    ----------
    tensor : array_like
        Dense data ``(I_1, ..., I_N)``.
    ranks : sequence of int
        The ``N - 1`` internal TT ranks. Bonds that TT-SVD cannot fill to this size are padded
        (:func:`pad_tt_cores`).
    mask : array_like of bool, optional
        Observed entries; the others are set to the mean of the observed ones before the
        decomposition.
    seed : int
        Seed of the padding's random values.

    Returns
    -------
    list of torch.Tensor
        ``N`` float64 cores ``(r_{k-1}, I_k, r_k)`` with ``r_0 = r_N = 1``, the norm spread
        evenly over them.
    """
    data = fill_missing(tensor, mask).numpy()
    with numpy_backend():
        tt = tl.decomposition.tensor_train(tl.tensor(data), rank=[1, *ranks, 1])
    return pad_tt_cores([np.asarray(c) for c in tt.factors], ranks, seed)


def ttm_start(tensor, ranks: Sequence[int], *, mask=None, seed: int = 0) -> list[torch.Tensor]:
    """TT-matrix cores float64 from TensorLy's ``tensor_train_matrix``, padded and balanced.

    Parameters
    ----------
    tensor : array_like
        Dense data ``(I_1, ..., I_N, J_1, ..., J_N)``, row modes then column modes.
    ranks : sequence of int
        The ``N - 1`` internal ranks. Bonds the decomposition cannot fill to this size are
        padded (:func:`pad_tt_cores`).
    mask : array_like of bool, optional
        Observed entries; the others are set to the mean of the observed ones before the
        decomposition.
    seed : int
        Seed of the padding's random values.

    Returns
    -------
    list of torch.Tensor
        ``N`` float64 cores ``(r_{k-1}, I_k, J_k, r_k)`` with ``r_0 = r_N = 1``, the norm
        spread evenly over them.
    """
    data = fill_missing(tensor, mask).numpy()
    with numpy_backend():
        ttm = tl.decomposition.tensor_train_matrix(tl.tensor(data), rank=[1, *ranks, 1])
    return pad_tt_cores([np.asarray(c) for c in ttm.factors], ranks, seed)


def pad_tt_cores(cores: list[np.ndarray], ranks: Sequence[int], seed: int) -> list[torch.Tensor]:
    """Pad TT(-matrix) cores to the requested internal ranks and spread the norm evenly.

    A padded slot of bond ``k`` is small and random in core ``k`` (its last axis) and zero in
    core ``k + 1`` (its first axis), so the train reconstructs exactly what TT-SVD gave.
    """
    gen = torch.Generator().manual_seed(seed)
    full = (1,) + tuple(ranks) + (1,)
    # TT-SVD puts the whole norm into the last core; the others are orthonormal.
    total = float(np.linalg.norm(cores[-1]))
    small = PAD_SCALE * float(np.mean([np.abs(c).mean() for c in cores[:-1]])) \
        if len(cores) > 1 else PAD_SCALE
    small = small or PAD_SCALE  # all-zero data: TT-SVD cores carry no scale to copy
    out = []
    for k, c in enumerate(cores):
        t = torch.as_tensor(c, dtype=torch.float64)
        t = pad_rank(t, 0, full[k], gen, 0.0)
        t = pad_rank(t, t.ndim - 1, full[k + 1], gen, small)
        out.append(t)
    if total > 0:
        per = total ** (1.0 / len(out))
        out[-1] = out[-1] / total
        out = [t * per for t in out]
    return out
