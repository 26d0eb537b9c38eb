"""Shared machinery of the low-rank formats: parameters, rank slices, pruning.

Every format stores a list of parameter tensors. Each parameter may carry any number of
leading *sample* dimensions (particles, chains, draws); the trailing dimensions are the
parameter's own shape. A parameter also declares which of its own axes are *rank axes* and to
which rank dimension each belongs. That single declaration drives the prior (a per-slice
variance multiplies along every rank axis), the slice scales used for the effective rank, and
``prune()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorly as tl
import torch

from bayestensor.checks import is_integer, positive_int


@dataclass(frozen=True)
class ParamSpec:
    """Shape and rank axes of one parameter of a low-rank format.

    Parameters
    ----------
    name : str
        Parameter name, e.g. ``"factor0"`` or ``"core"``.
    shape : tuple of int
        Shape of the parameter without sample dimensions.
    rank_axes : dict of int to int
        Map from an axis of ``shape`` to the rank dimension it indexes.
    """

    name: str
    shape: tuple[int, ...]
    rank_axes: dict[int, int]

    def numel(self) -> int:
        """Number of scalars in one sample of the parameter: the product of ``shape``.

        Returns
        -------
        int
            ``prod(shape)``; 1 for a scalar parameter (``shape == ()``).
        """
        n = 1
        for s in self.shape:
            n *= s
        return n


def _per_mode_arrays(indices) -> bool:
    """Whether ``indices`` is a tuple of 1-D arrays or tensors (NumPy's per-mode form)."""
    return (isinstance(indices, tuple) and len(indices) > 0
            and all(isinstance(a, (np.ndarray, torch.Tensor)) and a.ndim == 1 for a in indices))


def as_index_tensor(indices, ndim: int, shape: Sequence[int] | None = None) -> torch.Tensor:
    """Validate an (n, ndim) integer index array and return it as a ``LongTensor``.

    Parameters
    ----------
    indices : array_like of int, shape (n, ndim), or tuple of ndim 1-D arrays
        One row per entry, one column per mode. Anything ``torch.as_tensor`` accepts (a
        NumPy array, a nested list, a tensor); float and boolean arrays are refused. A tuple of
        ``ndim`` one-dimensional NumPy arrays or tensors is NumPy's form, one array per mode
        (what ``np.nonzero(mask)`` returns), and is stacked into columns: read as rows, three
        entries of a 3-way tensor would be taken transposed without an error.
    ndim : int
        Number of modes of the tensor, the number of columns expected.
    shape : sequence of int, optional
        Size of each mode. When given, every index must lie in ``[0, shape[k])`` for its
        column ``k``; when ``None`` the range is not checked.

    Returns
    -------
    torch.Tensor
        The indices as an ``int64`` tensor of shape ``(n, ndim)``, on the device of
        ``indices`` when it is a tensor (the CPU otherwise).

    Raises
    ------
    ValueError
        If the array is not of an integer dtype, not two-dimensional with ``ndim`` columns, or
        an index is out of range (the message names the first such entry and its mode).
    """
    if _per_mode_arrays(indices):
        if len(indices) != ndim or len({len(a) for a in indices}) != 1:
            raise ValueError(f"indices: a tuple of per-mode index arrays (as np.nonzero gives) "
                             f"needs {ndim} arrays of one length, got lengths "
                             f"{[len(a) for a in indices]}")
        indices = torch.stack([torch.as_tensor(a) for a in indices], dim=1)
    idx = torch.as_tensor(indices)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise ValueError(f"indices: expected an integer array, got dtype {idx.dtype}")
    idx = idx.long()
    if idx.ndim != 2 or idx.shape[1] != ndim:
        raise ValueError(f"indices: expected shape (n, {ndim}), got {tuple(idx.shape)}")
    if shape is not None and idx.numel() > 0:
        upper = torch.as_tensor(list(shape), dtype=torch.long)
        bad = (idx < 0) | (idx >= upper)
        if bool(bad.any()):
            row, col = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"indices: entry {tuple(idx[row].tolist())} at row {row} is out of range for "
                f"mode {col} of size {shape[col]} (tensor shape {tuple(shape)})"
            )
    return idx


def as_param_list(params) -> list[torch.Tensor]:
    """Parameters as a list of floating torch tensors of one dtype.

    Torch tensors pass through unchanged (autograd intact); NumPy arrays and nested lists are
    converted keeping float64 (a TensorLy user passes NumPy factors); integer arrays become the
    default float dtype. Mixed float dtypes are promoted to the widest.
    """
    if isinstance(params, (torch.Tensor, np.ndarray)) or not isinstance(params, (list, tuple)):
        raise ValueError(f"params: expected a list of arrays, got {type(params).__name__} "
                         "(for a TensorLy object use from_tensorly)")
    out = []
    for k, p in enumerate(params):
        out.append(as_float_tensor(f"params[{k}]", p))
    dtypes = {p.dtype for p in out}
    if len(dtypes) > 1:
        common = out[0].dtype
        for d in dtypes:
            common = torch.promote_types(common, d)
        out = [p.to(common) for p in out]
    return out


def as_float_tensor(name: str, value) -> torch.Tensor:
    """``value`` as a floating torch tensor (NumPy float64 stays float64)."""
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(np.asarray(to_numpy(value)))
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name}: expected a numeric array, got "
                             f"{type(value).__name__}") from None
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: expected a real numeric array, got dtype {t.dtype}")
    if not t.dtype.is_floating_point:
        t = t.to(torch.get_default_dtype())
    return t


def to_numpy(value):
    """An array of any TensorLy backend (NumPy, PyTorch, JAX, ...) as a NumPy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if type(value).__module__.split(".")[0] == "cupy":  # np.asarray refuses device arrays
        return value.get()
    return np.asarray(value)


def backend_array(value: torch.Tensor):
    """A copy of ``value`` as an array of TensorLy's current backend, on the CPU."""
    return tl.tensor(value.detach().cpu().numpy().copy())


def data_dtype(tensor, dtype=None) -> torch.dtype:
    """The float dtype a decomposition of ``tensor`` returns: ``dtype`` when given, else the
    input's own float dtype (float64 stays float64, float32 stays float32), else the default
    dtype."""
    if dtype is not None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype!r}")
        return dtype
    dtype = tensor.dtype if isinstance(tensor, torch.Tensor) else None
    if dtype is None:
        np_dtype = np.asarray(tensor).dtype
        if np_dtype == np.float64:
            return torch.float64
        if np_dtype == np.float32:
            return torch.float32
        return torch.get_default_dtype()
    return dtype if dtype in (torch.float32, torch.float64) else torch.get_default_dtype()


def check_modes(fmt: str, shape: Sequence[int]) -> None:
    """Raise ``ValueError`` naming ``shape`` unless it has at least two modes, each a positive
    integer size.

    A 1-D tensor (a vector) has no low-rank structure to find.
    """
    if not all(is_integer(s) and s >= 1 for s in shape):
        raise ValueError(f"shape: expected positive integer sizes, got {tuple(shape)}")
    if len(shape) < 2:
        raise ValueError(f"shape: {fmt} needs at least 2 modes (a 1-D tensor has no low-rank "
                         f"structure), got {tuple(shape)}")


def tensorly_pair(obj, first: str, second: str) -> tuple:
    """``(first, second)`` from a TensorLy CP/Tucker object or a plain pair, or a ``ValueError``
    naming ``obj`` and the layout expected (a TensorLy object unpacks as the pair)."""
    try:
        a, b = obj
        iter(b)
    except (TypeError, ValueError):
        raise ValueError(f"obj: expected a TensorLy decomposition or a ({first}, {second}) "
                         f"pair, got {type(obj).__name__}") from None
    return a, b


class LowRankTensor:
    """Base class of the low-rank formats (CP, Tucker, TT, TT-matrix).

    Subclasses define ``specs`` (the parameter layout for a shape and rank), ``reconstruct``
    and ``entries``. Parameters may carry leading sample dimensions, shared by all of them.

    Parameters
    ----------
    shape : sequence of int
        Shape of the represented tensor, without sample dimensions (each size is converted
        with ``int``).
    params : list of arrays
        The format's parameters in its order (see :meth:`specs`). Torch tensors are kept as
        they are (autograd intact); NumPy arrays and nested lists are converted, float64
        staying float64 and integer arrays becoming the default float dtype; mixed float
        dtypes are promoted to the widest. Each may have leading sample dimensions, the same
        for all.

    Attributes
    ----------
    shape : tuple of int
        Shape of the represented tensor.
    params : list of torch.Tensor
        The parameters, each ``batch_shape + spec.shape``.
    param_specs : list of ParamSpec
        Name, shape and rank axes of each parameter, derived from ``params``.
    batch_shape : tuple of int
        The leading sample dimensions shared by all parameters (``()`` for one sample).

    Raises
    ------
    ValueError
        If ``params`` is not a list or tuple, a parameter is not a real numeric array, the
        number of parameters is wrong for ``shape``, a parameter has too few dimensions or
        trailing dimensions that do not fit the format's layout, or the parameters' sample
        dimensions differ.
    """

    format_name = "base"

    def __init__(self, shape: Sequence[int], params: Sequence[torch.Tensor]):
        self.shape = tuple(int(s) for s in shape)
        self.params = as_param_list(params)
        expected = self._n_params_expected()
        if len(self.params) != expected:
            raise ValueError(f"params: {type(self).__name__} of shape {self.shape} expects "
                             f"{expected} parameters ({self._param_layout()}), got "
                             f"{len(self.params)}")
        for k, p in enumerate(self.params):
            if p.ndim < self._param_ndim(k):
                raise ValueError(f"params[{k}]: expected at least {self._param_ndim(k)} "
                                 f"dimensions, got shape {tuple(p.shape)}")
        specs = self._specs_from_params()
        self.param_specs = specs
        for spec, p in zip(specs, self.params):
            if tuple(p.shape[p.ndim - len(spec.shape):]) != spec.shape:
                raise ValueError(
                    f"{spec.name}: expected trailing shape {spec.shape}, got {tuple(p.shape)}"
                )
        batch = {tuple(p.shape[: p.ndim - len(s.shape)]) for s, p in zip(specs, self.params)}
        if len(batch) != 1:
            raise ValueError(f"params: all parameters need the same sample dims, got {batch}")
        self.batch_shape = batch.pop()

    def _n_params_expected(self) -> int:
        """How many parameters the format needs for ``self.shape``."""
        raise NotImplementedError

    def _param_layout(self) -> str:
        """Words for the parameter list, quoted when its length is wrong."""
        raise NotImplementedError

    def _param_ndim(self, k: int) -> int:
        """Dimensions of parameter ``k`` without sample dims."""
        raise NotImplementedError

    # --- layout -----------------------------------------------------------------------------
    @classmethod
    def specs(cls, shape: Sequence[int], rank) -> list[ParamSpec]:
        """Parameter layout for a tensor ``shape`` and ``rank`` (see each format).

        Parameters
        ----------
        shape : sequence of int
            Shape of the represented tensor, without sample dimensions.
        rank : int or sequence of int
            The rank in any form :meth:`normalize_rank` accepts for this format.

        Returns
        -------
        list of ParamSpec
            One spec per parameter, in the order the constructor takes them: its name, its
            shape without sample dimensions and its rank axes.

        Raises
        ------
        ValueError
            If ``normalize_rank`` refuses ``shape`` or ``rank``.
        """
        raise NotImplementedError

    @classmethod
    def index_axes(cls, shape: Sequence[int]) -> list[dict[int, int]]:
        """Per parameter (in :meth:`specs`' order), its axes that a mode of the tensor indexes.

        An entry ``X[i_1, ..., i_N]`` reads parameter ``p`` only at index ``i_m`` along each
        axis ``a`` with ``index_axes(shape)[p][a] == m``, so a slice of ``p`` along such an axis
        that no observed entry's ``i_m`` reaches leaves the likelihood unchanged (the rows the
        data leave empty, :class:`~bayestensor.models.empty_rows.EmptyRows`).

        Parameters
        ----------
        shape : sequence of int
            Shape of the represented tensor.

        Returns
        -------
        list of dict of int to int
            ``{axis: mode}`` per parameter; ``{}`` for a parameter every entry reads (a
            Tucker core).
        """
        raise NotImplementedError

    @classmethod
    def normalize_rank(cls, shape: Sequence[int], rank, *, name: str = "rank") -> tuple[int, ...]:
        """Return the rank as a tuple with one entry per rank dimension.

        Parameters
        ----------
        shape : sequence of int
            Shape of the represented tensor, without sample dimensions; checked against the
            format's requirements.
        rank : int or sequence of int
            Positive integers only (floats, strings and booleans are refused). A single
            integer applies to every rank dimension; the sequences accepted depend on the
            format.
        name : str
            The argument's name in error messages (a model's ``max_rank``, say).

        Returns
        -------
        tuple of int
            One size per rank dimension of the format.

        Raises
        ------
        ValueError
            If ``shape`` does not suit the format or ``rank`` is not a valid rank for it.
        """
        raise NotImplementedError

    def _specs_from_params(self) -> list[ParamSpec]:
        raise NotImplementedError

    @property
    def ranks(self) -> tuple[int, ...]:
        """Size of each rank dimension."""
        return tuple(self._rank_sizes(self.param_specs))

    @property
    def ndim(self) -> int:
        """Order of the represented tensor."""
        return len(self.shape)

    @property
    def param_names(self) -> list[str]:
        """Names of the parameters in order, e.g. ``["factor0", "factor1", "factor2"]``."""
        return [s.name for s in self.param_specs]

    def n_params(self) -> int:
        """Number of scalar parameters of one sample (sample dims excluded)."""
        return sum(s.numel() for s in self.param_specs)

    def dense_size(self) -> int:
        """Number of entries of the dense tensor."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def compression_ratio(self) -> float:
        """Dense entries divided by low-rank parameters."""
        return self.dense_size() / self.n_params()

    # --- values -----------------------------------------------------------------------------
    def reconstruct(self) -> torch.Tensor:
        """Dense tensor of shape ``batch_shape + shape``."""
        raise NotImplementedError

    def entries(self, indices, check: bool = True) -> torch.Tensor:
        """Entries at an (n, ndim) index array, shape ``batch_shape + (n,)``.

        Only the factor rows (core slices) named by the indices are gathered, so a large
        tensor is never formed; CP forms a small one when that is faster (at most
        ``cp.DENSE_PICK_RATIO`` entries per index), and Tucker and the trains contract their
        leading modes into a dense prefix of bounded size when that is cheaper (see
        :mod:`bayestensor.formats.prefix_entries`). ``check=False`` skips validating the
        indices (for inner loops that validated them once).

        Parameters
        ----------
        indices : array_like of int, shape (n, ndim)
            One row per entry, one column per mode of ``shape``. It is moved to the device
            of the parameters.
        check : bool
            Validate ``indices`` with :func:`as_index_tensor` (integer dtype, ``(n, ndim)``,
            within ``shape``). With ``False`` they must already be a valid integer index
            array; nothing is checked.

        Returns
        -------
        torch.Tensor
            The entries, shape ``batch_shape + (n,)``, in the dtype of the parameters (one
            value per index row and per sample).

        Raises
        ------
        ValueError
            With ``check=True``, when ``indices`` is not a valid index array for ``shape``
            (see :func:`as_index_tensor`).
        """
        if check:
            indices = as_index_tensor(indices, self.ndim, self.shape)
        return self._entries(torch.as_tensor(indices).to(self.params[0].device))

    def _entries(self, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- rank slices ------------------------------------------------------------------------
    def slice_norms(self) -> list[torch.Tensor]:
        """Scale of every rank slice, one tensor ``batch_shape + (R_d,)`` per rank dimension.

        The scale of slice ``k`` of rank dimension ``d`` is the product, over the parameters
        with a rank axis of dimension ``d``, of the Frobenius norm of that parameter's slice
        ``k``. For CP this is the magnitude ``prod_n ||a_n[:, k]||`` of component ``k``.
        """
        nb = len(self.batch_shape)
        out = []
        for d, size in enumerate(self.ranks):
            total = torch.ones(self.batch_shape + (size,), dtype=self.params[0].dtype,
                               device=self.params[0].device)
            for spec, p in zip(self.param_specs, self.params):
                for axis, dim in spec.rank_axes.items():
                    if dim != d:
                        continue
                    moved = p.movedim(nb + axis, -1)
                    flat = moved.reshape(self.batch_shape + (-1, size))
                    total = total * flat.norm(dim=-2)
            out.append(total)
        return out

    def prune(self, keep: Sequence) -> "LowRankTensor":
        """Drop rank slices.

        Parameters
        ----------
        keep : sequence of boolean arrays
            One mask of length ``R_d`` per rank dimension; ``True`` keeps the slice. A rank
            dimension keeps at least one slice (the largest one is kept if the mask is empty).

        Returns
        -------
        LowRankTensor
            A new tensor of the same format with fewer parameters.
        """
        if len(keep) != len(self.ranks):
            raise ValueError(f"keep: expected {len(self.ranks)} masks, got {len(keep)}")
        norms = self.slice_norms()
        kept_idx = []
        for d, mask in enumerate(keep):
            try:
                mask = torch.as_tensor(mask, dtype=torch.bool)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"keep[{d}]: expected a boolean mask of length "
                                 f"{self.ranks[d]}, got {mask!r}") from None
            if mask.shape != (self.ranks[d],):
                raise ValueError(
                    f"keep[{d}]: expected a mask of length {self.ranks[d]}, got {tuple(mask.shape)}"
                )
            if not bool(mask.any()):
                mask = torch.zeros_like(mask)
                mean_norm = norms[d].reshape(-1, self.ranks[d]).mean(0)
                mask[int(mean_norm.argmax())] = True
            kept_idx.append(mask.nonzero().flatten().to(self.params[0].device))
        nb = len(self.batch_shape)
        new_params = []
        for spec, p in zip(self.param_specs, self.params):
            for axis, dim in spec.rank_axes.items():
                p = p.index_select(nb + axis, kept_idx[dim])
            new_params.append(p)
        return self._new(new_params, lambda w: w.index_select(-1, kept_idx[0]))

    def sample(self, i) -> "LowRankTensor":
        """The tensor at index ``i`` of the (flattened) sample dims; a slice ``i`` keeps those
        samples as one flat sample dim."""
        nb = len(self.batch_shape)
        params = [p.reshape((-1,) + tuple(p.shape[nb:]))[i] for p in self.params]
        return self._new(params, lambda w: w.reshape((-1, w.shape[-1]))[i])

    def to(self, *args, **kwargs) -> "LowRankTensor":
        """Move or cast every parameter (``torch.Tensor.to`` semantics).

        Parameters
        ----------
        *args, **kwargs
            Passed unchanged to ``torch.Tensor.to`` of each parameter (and of any other
            tensor the format keeps, such as the CP weights): a device, a dtype, a tensor to
            match, ``non_blocking``, ``copy``, ...

        Returns
        -------
        LowRankTensor
            A new object of the same format and ``shape`` holding the converted parameters;
            this one is left as it is. A parameter that already has the requested device and
            dtype is shared, not copied (``torch.Tensor.to`` returns it as is unless
            ``copy=True``), and gradients flow through the conversion.
        """
        return self._new([p.to(*args, **kwargs) for p in self.params],
                         lambda w: w.to(*args, **kwargs))

    def copy(self) -> "LowRankTensor":
        """A copy whose parameters are new tensors (``clone``: changing them in place leaves
        this tensor alone; gradients still flow to the originals)."""
        return self._new([p.clone() for p in self.params], lambda w: w.clone())

    def _new(self, params: list[torch.Tensor], edit_extra) -> "LowRankTensor":
        """The same format on new ``params``; ``edit_extra`` maps any non-parameter state
        (the CP weights) the same way the parameters were mapped."""
        return type(self)(self.shape, params)

    # --- TensorLy-style operations ----------------------------------------------------------
    def norm(self) -> torch.Tensor:
        """Frobenius norm, shape ``batch_shape``, computed from the parameters.

        Uses :meth:`inner` with itself, which contracts the parameters pairwise (Gram matrices
        for CP and Tucker, a transfer matrix along the train for TT), so the dense tensor is
        never formed.
        """
        return self.inner(self).clamp_min(0.0).sqrt()

    def inner(self, other) -> torch.Tensor:
        """Sum of the entrywise product with ``other``, shape ``batch_shape``.

        Parameters
        ----------
        other : LowRankTensor or array_like
            A tensor of the same shape. Of the same format it is contracted through the
            parameters without forming either dense tensor; of another format, or dense, the
            dense tensors are multiplied.

        Raises
        ------
        ValueError
            When the shapes differ.
        """
        other_shape = other.shape if isinstance(other, LowRankTensor) else np.shape(other)
        if tuple(other_shape)[-self.ndim:] != self.shape:
            raise ValueError(f"other: expected a tensor of shape {self.shape}, got "
                             f"{tuple(other_shape)}")
        if type(other) is type(self):
            return self._inner_same(other)
        dense = (other.reconstruct() if isinstance(other, LowRankTensor)
                 else as_float_tensor("other", other))
        mine = self.reconstruct()
        dense = dense.to(device=mine.device, dtype=torch.promote_types(dense.dtype, mine.dtype))
        return (mine.to(dense.dtype) * dense).flatten(-self.ndim).sum(-1)

    def _inner_same(self, other) -> torch.Tensor:
        raise NotImplementedError

    def unfold(self, mode: int) -> torch.Tensor:
        """Mode-``mode`` unfolding, ``batch_shape + (shape[mode], -1)``, as ``tl.unfold`` of
        the dense tensor (the other modes in order, the last one varying fastest)."""
        mode = self._check_mode(mode)
        nb = len(self.batch_shape)
        dense = self.reconstruct().movedim(nb + mode, nb)
        return dense.reshape(self.batch_shape + (self.shape[mode], -1))

    def mode_dot(self, matrix_or_vector, mode: int):
        """Mode-``mode`` product, as ``tl.tenalg.mode_dot`` of the dense tensor.

        Parameters
        ----------
        matrix_or_vector : array_like
            A ``(J, shape[mode])`` matrix, or a ``(shape[mode],)`` vector.
        mode : int

        Returns
        -------
        LowRankTensor or torch.Tensor
            For a matrix, the same format with mode ``mode`` of size ``J`` (exact: only the
            parameter of that mode changes). For a vector the mode is contracted away; the
            result is returned dense, ``batch_shape + shape`` without ``mode``.
        """
        mode = self._check_mode(mode)
        ref = self.params[0]
        m = as_float_tensor("matrix_or_vector", matrix_or_vector)
        m = m.to(device=ref.device, dtype=torch.promote_types(m.dtype, ref.dtype))
        size = self.shape[mode]
        if m.ndim not in (1, 2) or m.shape[-1] != size:
            raise ValueError(f"matrix_or_vector: expected shape (J, {size}) or ({size},) for "
                             f"mode {mode} of shape {self.shape}, got {tuple(m.shape)}")
        if m.ndim == 1:
            nb = len(self.batch_shape)
            dense = self.reconstruct().to(m.dtype).movedim(nb + mode, -1)
            return dense @ m
        params = [p.to(m.dtype) for p in self.params]
        return self._mode_dot_matrix(params, m, mode)

    def _mode_dot_matrix(self, params, matrix, mode) -> "LowRankTensor":
        raise NotImplementedError

    def _check_mode(self, mode) -> int:
        mode = positive_int("mode", mode, minimum=0)
        if mode >= self.ndim:
            raise ValueError(f"mode: expected an integer in [0, {self.ndim - 1}], got {mode}")
        return mode

    @classmethod
    def from_tensorly(cls, obj) -> "LowRankTensor":
        """The same tensor from a TensorLy decomposition of this format.

        Parameters
        ----------
        obj
            A TensorLy ``CPTensor`` / ``TuckerTensor`` / ``TTTensor`` / ``TTMatrix``, or the
            plain form TensorLy accepts for it: ``(weights, factors)`` for CP (``weights``
            may be ``None``), ``(core, factors)`` for Tucker, the list of cores for TT and
            TT-matrix. Arrays of any TensorLy backend are converted; float64 stays float64.

        Raises
        ------
        ValueError
            When ``obj`` does not have the format's layout (see the constructor's checks).
        """
        raise NotImplementedError

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def random(cls, shape, rank, *, scale: float = 1.0, batch_shape=(), seed: int | None = None,
               dtype=torch.float32) -> "LowRankTensor":
        """Random parameters whose reconstruction has entries of standard deviation ``scale``.

        Each parameter is standard normal times a per-parameter factor chosen so that the
        variance of a reconstructed entry equals ``scale**2`` (the product of the parameter
        variances times the number of rank terms summed).

        Parameters
        ----------
        shape : sequence of int
            Shape of the represented tensor, without sample dimensions.
        rank : int or sequence of int
            The rank in any form :meth:`normalize_rank` accepts for this format.
        scale : float
            Standard deviation of a reconstructed entry.
        batch_shape : tuple of int
            Leading sample dimensions of every parameter; ``()`` gives a single sample.
        seed : int, optional
            Seed of a fresh ``torch.Generator`` for the draws; ``None`` uses torch's global
            random generator.
        dtype : torch.dtype
            Dtype of the parameters.

        Returns
        -------
        LowRankTensor
            A tensor of the calling format (CP without separate weights) whose parameters
            have shape ``batch_shape + spec.shape``.

        Raises
        ------
        ValueError
            If ``normalize_rank`` refuses ``shape`` or ``rank``.
        """
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        specs = cls.specs(shape, rank)
        stds = cls._random_stds(specs, scale)
        params = [
            torch.randn(tuple(batch_shape) + s.shape, generator=gen, dtype=dtype) * std
            for s, std in zip(specs, stds)
        ]
        return cls(shape, params)

    @classmethod
    def _random_stds(cls, specs: list[ParamSpec], scale: float) -> list[float]:
        """Per-parameter std giving reconstructed entries of std ``scale``."""
        n_terms = 1
        for size in cls._rank_sizes(specs):
            n_terms *= size
        # Every term of every format multiplies one entry of each parameter, and there are
        # prod(ranks) terms, so Var(entry) = n_terms * prod_p std_p**2.
        per = (scale**2 / n_terms) ** (1.0 / (2 * len(specs)))
        return [per for _ in specs]

    @staticmethod
    def _rank_sizes(specs: list[ParamSpec]) -> list[int]:
        sizes: dict[int, int] = {}
        for spec in specs:
            for axis, dim in spec.rank_axes.items():
                sizes[dim] = spec.shape[axis]
        return [sizes[d] for d in sorted(sizes)]

    @classmethod
    def from_tensor(cls, tensor, rank, *, mask=None, seed: int = 0, n_iter_max: int = 100,
                    dtype=None):
        """Initialize by an SVD-based decomposition of a dense tensor (TensorLy).

        Parameters
        ----------
        tensor : array_like
            Dense data. The parameters have its float dtype (float64 stays float64, float32
            stays float32; other dtypes give the default dtype).
        rank : int or sequence of int
            Target rank (integers only: ``2.5`` or ``2.0`` is refused). Slices beyond what
            the decomposition can give are padded without changing its reconstruction: zero
            in one parameter of the slice, small and random in the others, so that a later
            gradient-based fit can still grow them (see :mod:`bayestensor.formats.decompose`).
        mask : array_like of bool, optional
            Observed entries. Missing entries are filled with the mean of the observed ones
            before decomposing.
        seed : int
            Seed for the random parts of the initialization.
        n_iter_max : int
            Iterations of the ALS (CP) or HOOI (Tucker); TT-SVD is not iterative and
            ignores it.
        dtype : torch.dtype, optional
            ``torch.float32`` or ``torch.float64`` for the parameters; by default the data's
            (a model that fits in float32 passes ``torch.float32``).

        See Also
        --------
        bayestensor.formats.decompose : the decompositions themselves.
        """
        raise NotImplementedError

    def to_tensorly(self):
        """The same tensor as a TensorLy decomposition object (single sample only).

        Its arrays belong to TensorLy's current backend (NumPy arrays by default, CPU torch
        tensors after ``tl.set_backend("pytorch")`` or ``import tltorch``), copies of the
        parameters in their dtype, so ``tl.cp_to_tensor`` and friends take it as it is.

        Raises
        ------
        ValueError
            When the tensor holds several samples.
        """
        if self.batch_shape:
            raise ValueError("to_tensorly: expected a single sample, got batch_shape "
                             f"{self.batch_shape}; use .sample(i)")
        return self._to_tensorly([backend_array(p) for p in self.params])

    def _to_tensorly(self, params: list):
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shape={self.shape}, ranks={self.ranks}, "
                f"batch_shape={self.batch_shape})")

