"""Load a network a user already trained, for :func:`bayestensor.nets.workflow.run_finetune`.

Two forms, as ``bayestensor compress --model`` takes them:

* ``"package.module:factory"`` (or ``"path/to/file.py:factory"``) plus a state dict: the
  factory builds the architecture and the state dict, read with ``weights_only=True`` so the
  file cannot run code, fills its weights;
* a TorchScript file (``torch.jit.save``) of an ``nn.Sequential`` of standard layers. A
  scripted layer cannot be swapped for a tensorized one, so the model is rebuilt as eager
  modules with the scripted weights, and the two are compared on a probe batch.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

#: Images of the user's task a loaded model is first run on (:func:`check_fits_data`).
PROBE_IMAGES = 64

#: TorchScript layers rebuilt as eager modules, with the constructor arguments they keep.
REBUILT = {
    "Linear": (nn.Linear, ("in_features", "out_features")),
    "Conv2d": (nn.Conv2d, ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                           "dilation", "groups", "padding_mode")),
    "ReLU": (nn.ReLU, ()), "Tanh": (nn.Tanh, ()), "Sigmoid": (nn.Sigmoid, ()),
    "GELU": (nn.GELU, ()), "Identity": (nn.Identity, ()), "Dropout": (nn.Dropout, ("p",)),
    "Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "MaxPool2d": (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "AvgPool2d": (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode")),
    "BatchNorm2d": (nn.BatchNorm2d, ("num_features", "eps", "momentum", "affine")),
    "BatchNorm1d": (nn.BatchNorm1d, ("num_features", "eps", "momentum", "affine")),
}


def load_user_model(spec: str, state_dict=None, probe: torch.Tensor | None = None,
                    classes: int | None = None) -> nn.Module:
    """The user's trained network, in eval mode on the CPU.

    Parameters
    ----------
    spec : str
        ``"module:factory"`` / ``"file.py:factory"`` (with ``state_dict``), or the path of a
        TorchScript file.
    state_dict : path, optional
        A ``torch.save``'d state dict for the factory's model (read with ``weights_only``).
    probe : tensor, optional
        Inputs of the user's task (a batch of its images) that the model must take (see
        :func:`check_fits_data`), and on which a rebuilt TorchScript model must give the
        file's outputs.
    classes : int, optional
        Classes of the task: with ``probe``, the model must give a score for each.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        Naming ``model`` or ``state_dict`` when the spec, the file or the weights do not fit,
        or the model does not take ``probe`` (one score per class).
    """
    model = _load(str(spec), state_dict, probe)
    if probe is not None:
        check_fits_data(model, probe, classes)
    return model


def check_fits_data(model: nn.Module, x: torch.Tensor, classes: int | None = None) -> None:
    """Raise ``ValueError`` naming ``model`` unless it maps the images ``x`` to one row of
    scores each, with at least ``classes`` columns; the model's train/eval mode is kept.

    Run on a small batch before any work, so that a network made for other inputs fails
    with the shapes at hand rather than deep in the fine-tune.
    """
    training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as err:  # noqa: BLE001 - the user's layers may raise anything
        lines = str(err).strip().splitlines()
        # TorchScript quotes the scripted code first; its last line names the error
        cause = lines[-1] if len(lines) > 1 else f"{type(err).__name__}: {err}"
        raise ValueError(f"model: fails on the data's images (a batch of shape "
                         f"{tuple(x.shape)}): {cause}") from None
    finally:
        model.train(training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    wanted = f"({x.shape[0]}, {classes if classes is not None else 'classes'})"
    if (not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]
            or (classes is not None and out.shape[1] < classes)):
        raise ValueError(f"model: gives outputs of shape {shape} for a batch of shape "
                         f"{tuple(x.shape)}, expected {wanted}: one score per class of the data")


def _load(spec: str, state_dict, probe) -> nn.Module:
    """The model of :func:`load_user_model`, before its check against the data."""
    path = Path(spec)
    if path.is_file():
        if state_dict is not None:
            raise ValueError("state_dict: a TorchScript file carries its own weights; give a "
                             "state dict only with 'module:factory'")
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # noqa: BLE001 - torch raises several kinds here
            raise ValueError(f"model: {spec!r} is not a TorchScript file ({err})") from None
        eager = eager_from_script(scripted).eval()
        if probe is not None:
            check_fits_data(scripted, probe)
            _check_same_outputs(eager, scripted, probe)
        return eager
    if ":" not in spec:
        raise ValueError(f"model: expected a TorchScript file or 'module:factory', got {spec!r}"
                         " (no such file)")
    if state_dict is None:
        raise ValueError("state_dict: 'module:factory' builds an untrained model; give the "
                         "trained weights with --state-dict")
    if not Path(state_dict).is_file():
        raise ValueError(f"state_dict: no such file {str(state_dict)!r}")
    model = _from_factory(*spec.rsplit(":", 1))
    try:
        weights = torch.load(str(state_dict), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"state_dict: no such file {str(state_dict)!r}") from None
    except Exception as err:  # noqa: BLE001 - an unpickling error names what it refused
        raise ValueError(f"state_dict: {str(state_dict)!r} is not a plain state dict ({err})") \
            from None
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"state_dict: does not fit the model built by {spec!r}: {err}") from None
    return model.eval()


def _from_factory(module_name: str, factory_name: str) -> nn.Module:
    if module_name.endswith(".py"):
        file = Path(module_name)
        if not file.is_file():
            raise ValueError(f"model: no such file {module_name!r}")
        spec = importlib.util.spec_from_file_location(file.stem, file)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - the user's file may raise anything
            raise ValueError(f"model: running {module_name!r} failed: "
                             f"{type(err).__name__}: {err}") from err
    else:
        if "" not in sys.path:  # `python -m` puts the working directory first; the CLI may not
            sys.path.insert(0, "")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"model: cannot import {module_name!r} ({err})") from None
        except Exception as err:  # noqa: BLE001 - the user's module may raise anything
            raise ValueError(f"model: importing {module_name!r} failed: "
                             f"{type(err).__name__}: {err}") from err
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"model: {module_name!r} has no callable {factory_name!r}")
    try:
        model = factory()
    except Exception as err:  # noqa: BLE001 - the user's factory may raise anything
        raise ValueError(f"model: {module_name}:{factory_name}() failed: "
                         f"{type(err).__name__}: {err} (the factory is called with no "
                         "arguments)") from err
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {module_name}:{factory_name}() returned "
                         f"{type(model).__name__}, expected a torch.nn.Module")
    return model


def eager_from_script(scripted, name: str = "") -> nn.Module:
    """An eager copy of a scripted ``nn.Sequential`` (nested ones too) of the ``REBUILT``
    layers, with the scripted parameters and buffers.

    Raises
    ------
    ValueError
        Naming ``model`` and the first layer that cannot be rebuilt.
    """
    kind = getattr(scripted, "original_name", type(scripted).__name__)
    if kind == "Sequential":
        return nn.Sequential(*[eager_from_script(child, f"{name}.{n}".lstrip("."))
                               for n, child in scripted.named_children()])
    if kind not in REBUILT:
        raise ValueError(f"model: TorchScript layer {name or '<root>'!r} ({kind}) cannot be "
                         f"rebuilt as an eager module; save the model as 'module:factory' plus "
                         f"a state dict instead (rebuilt: Sequential, {', '.join(REBUILT)})")
    cls, args = REBUILT[kind]
    kwargs = {a: getattr(scripted, a) for a in args}
    if kind in ("Linear", "Conv2d"):
        kwargs["bias"] = getattr(scripted, "bias", None) is not None
    module = cls(**kwargs)
    module.load_state_dict(scripted.state_dict())
    return module


def _check_same_outputs(eager: nn.Module, reference, x: torch.Tensor, tol: float = 1e-4) -> None:
    """Raise ``ValueError`` naming ``model`` if ``eager(x)`` and ``reference(x)`` differ by more
    than ``tol`` times the output scale (a TorchScript model rebuilt wrongly)."""
    with torch.no_grad():
        a, b = eager.eval()(x), reference.eval()(x)
    gap = float((a - b).abs().max())
    if gap > tol * max(1.0, float(b.abs().max())):
        raise ValueError(f"model: the rebuilt TorchScript model differs from the file's by "
                         f"{gap:.3g} on the probe inputs; save it as 'module:factory' plus a "
                         f"state dict")
