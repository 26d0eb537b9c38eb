"""The compression workflow: train a dense baseline and a Bayesian tensorized network on an
image dataset, prune, export, and write the run folder that ``bayestensor report`` reads.

:func:`build_model` makes the small MLP / CNN architectures; :func:`run_compress` is everything
``bayestensor compress`` does, and :func:`run_finetune` what it does with ``--model`` (a network
the user already trained).

The comparison is fair by construction: the dense baseline and the tensorized network get the
same optimizer (Adam), cosine schedule, epochs, batch size and batch order, and each trains at
its own learning rate, the one validation splits chose for it (:data:`TRAIN_LRS`): one shared
rate would handicap one of the two.
A layer whose tensorized form would have more parameters than the dense one stays dense, and
a run in which the prior pruned no slice of any layer says that its ranks are set by
``max_rank``, not found.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from bayestensor import checks
from bayestensor.data.images import ImageData
from bayestensor.infer.driver import RunInterrupted
from bayestensor.io import atomic_write, to_jsonable
from bayestensor.nets import metrics
from bayestensor.nets.calibration import choose_prior_weight, choose_sghmc_settings
from bayestensor.nets.convert import BayesianNet, save_exported, tensorize
from bayestensor.nets.train import METHODS, fit_net, predict_dense, train_dense
from bayestensor.nets.user_model import PROBE_IMAGES, check_fits_data
from bayestensor.report.rundir import write_run
from bayestensor.viz.calibration import reliability_figure
from bayestensor.viz.figures import save_png

ARCHS = ("mlp", "cnn")
#: Fine-tuning epochs of a user's trained model. On the mnist10k MLP, 10 epochs left Tucker
#: 1.1 points below the dense network and 20 epochs 0.3 points, still about a quarter of the
#: wall time of 40 epochs from scratch (docs/benchmarks.md, fine-tuning).
FINETUNE_EPOCHS = 20
#: Adam learning rates of a training run, per architecture: (compressed network, dense
#: baseline). MLP: each network's rate chosen on validation splits (10% of mnist10k's training
#: images, 3 seeds; ``benchmarks/finetune_mnist.py --choose-lr`` and ``--choose-dense-lr``).
#: A compressed MAP network from scratch, mean over TT-matrix, CP and Tucker: 95.01 / 95.28 /
#: 95.33 / 95.67% held-out accuracy at 5e-3 / 1e-2 / 2e-2 / 4e-2, NLL lowest at 4e-2 too. The
#: dense MLP: best at 1e-2 on every seed (96.54%), worst at 4e-2 (95.29%). At 1e-2 the prior
#: had not finished switching slices off in 40 epochs, so the ranks found followed the cap
#: (docs/benchmarks.md). CNN: not chosen on validation; the rate its benchmark trains both at.
TRAIN_LRS = {"mlp": (4e-2, 1e-2), "cnn": (1e-2, 1e-2)}
#: Adam learning rate of the compressed MLP, and of the run from scratch that ``run_finetune``
#: compares the fine-tune to.
TRAIN_LR = TRAIN_LRS["mlp"][0]
#: Adam learning rate of a mean-field VI fit, whatever the architecture. On the mnist10k MLP
#: (``benchmarks/nets_mnist.py --methods vi``, 3 seeds, test split, two rates compared, not a
#: validation choice) 4e-2 gave a higher ECE than 1e-2 in every format (TT-matrix 0.048 against
#: 0.024, CP 0.35 against 0.25, Tucker 0.15 against 0.12) and lower accuracy for CP and Tucker.
VI_LR = 1e-2
#: Adam learning rate of the fine-tune, chosen on validation splits (10% of mnist10k's training
#: images, 3 seeds; ``benchmarks/finetune_mnist.py --choose-lr``). Mean held-out accuracy over
#: TT-matrix, CP and Tucker: 94.92% at 5e-3, 95.31% at 1e-2, 95.47% at 2e-2, 95.56% at 4e-2; NLL
#: lowest at 2e-2. 2e-2 and 4e-2 are equal within the split's noise; the smaller is kept. The
#: decomposition keeps only 20-45% accuracy, so the fine-tune retrains more than it polishes.
FINETUNE_LR = 2e-2
#: Methods that fit one point estimate (one particle), whatever ``particles`` says.
POINT_METHODS = ("map", "vi")
#: Warning of a run in which no layer lost a rank slice: the cap, not the prior, set the ranks.
NOT_PRUNED = ("prior did not prune; results set by max_rank: every tensorized layer kept all "
              "its rank slices, so the data may want more; raise --max-rank to let the prior "
              "choose (or train longer or use a stronger prior, where fewer slices would do)")
#: Largest rank of a network trained from scratch, per format (others: 8). CP's slices are
#: cheap (a vector per mode) and each bounds the layer's matrix rank by one, so 8 capped it: on
#: the mnist10k MLP (three modes per side, 10 epochs, MAP, seed 0; dense 96.30%) max rank 8
#: kept 8 of 8 slices in both layers at 89.30%, 16 kept 16 at 93.85%, 32 kept 23 and 18 at
#: 94.75%, 64 kept 30 and 24 at 95.25% (``bayestensor compress --format cp --max-rank R``);
#: the MLP benchmark's CP layers have 40 (docs/benchmarks.md).
TRAIN_MAX_RANKS = {"cp": 40}
#: Largest rank of every other format, and of a fine-tune's decomposition in every format.
DEFAULT_MAX_RANK = 8
#: File in the run folder that takes the compressed network of an interrupted training run.
INTERRUPTED_MODEL = "model-interrupted.pt"
#: Channels of the two 3x3 convolutions of the CNN.
CNN_CHANNELS = (16, 32)


def default_lr(method: str, arch: str = "mlp") -> float:
    """Adam learning rate a compressed network trains at unless told.

    Parameters
    ----------
    method : {"map", "vi", "svgd", "sghmc"}
    arch : {"mlp", "cnn"}

    Returns
    -------
    float
        :data:`VI_LR` for ``method="vi"``, else ``arch``'s rate in :data:`TRAIN_LRS`.
    """
    return VI_LR if method == "vi" else TRAIN_LRS[arch][0]


def build_model(arch: str, input_shape, classes: int, hidden: int = 512, seed: int = 0) -> nn.Module:
    """A small classifier of ``(C, H, W)`` images.

    Parameters
    ----------
    arch : {"mlp", "cnn"}
        ``"mlp"``: Flatten-Linear(hidden)-ReLU-Linear; ``"cnn"``: two 3x3 convolutions
        (16 and 32 channels, ReLU), 2x2 max-pooling and the MLP head.
    input_shape : (int, int, int)
        ``(C, H, W)``.
    classes : int
    hidden : int
        Width of the hidden linear layer.
    seed : int
        Seed of the initial weights.

    Returns
    -------
    torch.nn.Module
    """
    checks.choice("arch", arch, ARCHS)
    hidden = checks.positive_int("hidden", hidden)
    torch.manual_seed(checks.seed_value(seed))
    c, h, w = input_shape
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(),
                             nn.Linear(hidden, classes))
    c1, c2 = CNN_CHANNELS
    return nn.Sequential(nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(c2 * (h // 2) * (w // 2), hidden), nn.ReLU(),
                         nn.Linear(hidden, classes))


def _compressible(name: str, module: nn.Module) -> bool:
    """Linear layers, and convolutions with more than one input channel."""
    if isinstance(module, nn.Conv2d):
        return module.in_channels > 1
    return isinstance(module, nn.Linear)


def tensorize_smaller(model: nn.Module, **kwargs) -> tuple[BayesianNet, list[dict]]:
    """:func:`tensorize` the compressible layers of ``model`` whose tensorized form is smaller
    than the dense layer; the others stay dense.

    Parameters
    ----------
    model : nn.Module
    **kwargs
        Passed to :func:`bayestensor.nets.tensorize` (not ``layers``).

    Returns
    -------
    (BayesianNet, list of dict)
        The network and, per layer kept dense, ``{"name", "dense_params",
        "compressed_params", "ratio"}`` (ratio below 1).

    Raises
    ------
    ValueError
        Naming ``max_rank`` when no layer would be smaller tensorized.
    """
    table = tensorize(model, layers=_compressible, **kwargs).compression()["layers"]
    dense = [{k: row[k] for k in ("name", "dense_params", "compressed_params", "ratio")}
             for row in table if row["ratio"] < 1]
    if len(dense) == len(table):
        raise ValueError(f"max_rank: {kwargs.get('max_rank')!r} makes every tensorized layer "
                         f"larger than the dense one ({dense}); lower it")
    names = {row["name"] for row in dense}
    bnet = tensorize(model, layers=lambda n, m: _compressible(n, m) and n not in names, **kwargs)
    return bnet, dense


def run_compress(data: ImageData, out, *, arch: str = "mlp", fmt: str = "ttm",
                 prior: str = "gamma", method: str = "map", epochs: int = 10,
                 max_rank: int | None = None,
                 hidden: int = 512, batch_size: int = 128, lr: float | None = None,
                 dense_lr: float | None = None, particles: int = 4,
                 threshold: float = 1e-2, rotate: float = 45.0, seed: int = 0,
                 calibrate: bool = False, min_ratio: float | None = None,
                 progress: bool | None = None) -> dict:
    """Train, compress and evaluate a network; write the run folder.

    Parameters
    ----------
    data : ImageData
        From :func:`bayestensor.data.images.load_dataset`.
    out : path
        Run folder (see :func:`bayestensor.report.rundir.prepare_run_dir`); receives
        ``model.pt``, ``ranks.csv``, ``reliability.png``, ``network.json``, ``summary.md`` and
        ``run.json``.
    arch : {"mlp", "cnn"}
    fmt : str
        Format of the tensorized layers.
    prior : str
    method : {"map", "vi", "svgd", "sghmc"}
    epochs, hidden, batch_size : int
    max_rank : int, optional
        Largest rank of every tensorized layer (default: ``fmt``'s in
        :data:`TRAIN_MAX_RANKS`, else :data:`DEFAULT_MAX_RANK`).
    lr : float, optional
        Adam learning rate of the tensorized network (default: ``arch``'s in
        :data:`TRAIN_LRS`, 4e-2 for the MLP, 1e-2 for the CNN; :data:`VI_LR`, 1e-2, for
        ``method="vi"``).
    dense_lr : float, optional
        Adam learning rate of the dense baseline (default: ``arch``'s in :data:`TRAIN_LRS`,
        1e-2 for both). Each network's best rate differs: on the mnist10k MLP, validation
        splits put the dense network's at 1e-2 and a compressed MAP network's at 4e-2
        (``docs/benchmarks.md``).
    particles : int
        SVGD particles / SGHMC chains (one for map and vi).
    threshold : float
        Prune slices whose weight norm is below ``threshold`` times the largest.
    rotate : float
        Rotation (degrees) of the shifted test images.
    seed : int
    calibrate : bool
        Before the fit, choose on 10% of the training examples: for SGHMC its step,
        temperature, warm-up and the log prior's weight
        (:func:`~bayestensor.nets.calibration.choose_sghmc_settings`, recorded as
        ``"sghmc_settings"`` in ``network.json``); for the other methods the log prior's weight
        (:func:`~bayestensor.nets.calibration.choose_prior_weight`, recorded as
        ``"prior_weight_choice"``), with every candidate's validation scores.
    min_ratio : float, optional
        With ``calibrate``: only candidates whose pruned network compresses the whole model at
        least this much are eligible.
    progress : bool or None
        Progress bars on stderr (``None``: when stderr is a terminal).

    Returns
    -------
    dict
        The ``network.json`` content: layers, layers kept dense, ratios, metrics,
        reliability, shift, training budget, times and warnings.

    Raises
    ------
    RunInterrupted
        On Ctrl-C (or SIGTERM under the command line) while the tensorized network trains:
        the network reached so far is saved first as :data:`INTERRUPTED_MODEL` in ``out``
        (particle 0, unpruned, read by :func:`~bayestensor.nets.convert.load_exported`).
    """
    checks.choice("method", method, METHODS)
    _check_calibrate(calibrate, min_ratio)
    checks.choice("arch", arch, ARCHS)
    lr = default_lr(method, arch) if lr is None else checks.real_number("lr", lr)
    dense_lr = TRAIN_LRS[arch][1] if dense_lr is None else checks.real_number("dense_lr", dense_lr)
    max_rank = TRAIN_MAX_RANKS.get(fmt, DEFAULT_MAX_RANK) if max_rank is None else max_rank
    out = Path(out)
    torch.manual_seed(checks.seed_value(seed))
    num_particles = 1 if method in POINT_METHODS else particles
    bnet, kept_dense = tensorize_smaller(
        build_model(arch, data.input_shape, data.classes, hidden, seed), format=fmt,
        max_rank=max_rank, prior=prior, num_particles=num_particles, init="random", seed=seed)
    notes = _kept_dense_notes(kept_dense)
    budget = {"optimizer": "Adam", "schedule": "cosine", "lr": lr, "dense_lr": dense_lr,
              "epochs": epochs, "batch_size": batch_size, "seed": seed}
    dense = build_model(arch, data.input_shape, data.classes, hidden, seed)
    dense_log = train_dense(dense, data.x_train, data.y_train, epochs=epochs,
                            batch_size=batch_size, lr=dense_lr, seed=seed, progress=progress)
    ranks_before = {n: list(m.ranks) for n, m in bnet.tensorized().items()}
    settings = {"arch": arch, "format": fmt, "prior": prior, "method": method, "epochs": epochs,
                "max_rank": max_rank, "hidden": hidden, "batch_size": batch_size, "lr": lr,
                "dense_lr": dense_lr, "particles": num_particles, "threshold": threshold,
                "rotate": rotate, "seed": seed, "calibrate": calibrate, "min_ratio": min_ratio}
    net_log = _fit(bnet, data, method, calibrate, min_ratio, threshold,
                   _model_config(settings, data), out, epochs=epochs, batch_size=batch_size,
                   lr=lr, seed=seed, progress=progress)
    network = _evaluate(bnet, dense, data, method, threshold, rotate, ranks_before)
    network.update(net_log["calibration"])
    if all(row["ranks_after"] == row["ranks_before"] for row in network["layers"]):
        notes.append(NOT_PRUNED)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    network.update(kept_dense=kept_dense, training=budget, warnings=notes,
                   train_seconds={"dense": dense_log["seconds"], method: net_log["seconds"]})
    _write_outputs(out, bnet, network, settings, data)
    return network


def run_finetune(data: ImageData, out, model: nn.Module, *, fmt: str = "ttm",
                 prior: str = "gamma", method: str = "map", epochs: int = FINETUNE_EPOCHS,
                 max_rank: int | None = None,
                 batch_size: int = 128, lr: float = FINETUNE_LR, particles: int = 4,
                 threshold: float = 1e-2, rotate: float = 45.0, seed: int = 0,
                 scratch_epochs: int | None = None, scratch_lr: float | None = None,
                 model_name: str = "",
                 calibrate: bool = False, min_ratio: float | None = None,
                 progress: bool | None = None) -> dict:
    """Compress a network the user already trained: decompose its layers, fine-tune, prune.

    The compressible layers whose tensorized form is smaller are replaced by Bayesian
    tensorized layers started from a decomposition of the trained weights
    (``tensorize(init="decompose")``), then the network is fine-tuned by ``method`` for
    ``epochs`` and pruned. The user's model is the dense reference. With ``scratch_epochs``
    the same compressed architecture is also trained from a random start for that many epochs,
    so the fine-tune's accuracy and wall time can be read next to training from scratch.

    Parameters
    ----------
    data : ImageData
        The user's task: test images for every metric, training images for the fine-tune.
    out : path
        Run folder; receives what :func:`run_compress` writes.
    model : nn.Module
        The trained network (left unchanged), e.g. from
        :func:`bayestensor.nets.user_model.load_user_model`.
    fmt, prior, method, batch_size, particles, threshold, rotate, seed, calibrate, min_ratio
        As in :func:`run_compress` (every calibration candidate starts from the decomposed
        network).
    max_rank : int, optional
        Largest rank of the decomposition (default :data:`DEFAULT_MAX_RANK` in every format:
        the fine-tune was measured there).
    epochs : int
        Fine-tuning epochs (default ``FINETUNE_EPOCHS``, 20).
    lr : float
        Adam learning rate of the fine-tune (default :data:`FINETUNE_LR`, 2e-2).
    scratch_epochs : int, optional
        Epochs of the run from scratch (none when ``None``).
    scratch_lr : float, optional
        Adam learning rate of the run from scratch (default :data:`TRAIN_LR`, 4e-2, the
        compressed MLP's rate chosen on validation splits; :data:`VI_LR` for ``method="vi"``).
    model_name : str
        How the model was given (recorded in ``run.json``).
    progress : bool or None

    Returns
    -------
    dict
        The ``network.json`` content, with the metrics of the decomposed network before the
        fine-tune (``"decomposed"``), after it, pruned, and from scratch (``"scratch_pruned"``),
        and ``train_seconds`` of the fine-tune and of the run from scratch.

    Raises
    ------
    ValueError
        Before any work, on a bad setting, or when ``model`` does not map the data's images
        to one score per class (see :func:`~bayestensor.nets.user_model.check_fits_data`).
    RunInterrupted
        On Ctrl-C (or SIGTERM under the command line): in the fine-tune, after saving the
        network reached as :func:`run_compress` does; in the run from scratch, after writing
        the fine-tune's complete run folder (whose warnings say the run from scratch is
        missing).
    """
    checks.choice("method", method, METHODS)
    _check_calibrate(calibrate, min_ratio)
    checks.positive_int("epochs", epochs)
    checks.real_number("lr", lr)
    max_rank = DEFAULT_MAX_RANK if max_rank is None else max_rank
    if scratch_lr is None:
        scratch_lr = default_lr(method)
    if scratch_epochs is not None:
        checks.positive_int("scratch_epochs", scratch_epochs)
        checks.real_number("scratch_lr", scratch_lr)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    check_fits_data(model, data.x_test[:PROBE_IMAGES], data.classes)
    out = Path(out)
    torch.manual_seed(checks.seed_value(seed))
    num_particles = 1 if method in POINT_METHODS else particles
    options = dict(format=fmt, max_rank=max_rank, prior=prior, num_particles=num_particles,
                   seed=seed)
    bnet, kept_dense = tensorize_smaller(model, init="decompose", **options)
    decomposed = metrics.summarize(bnet.predict_proba(data.x_test), data.y_test)
    ranks_before = {n: list(m.ranks) for n, m in bnet.tensorized().items()}
    settings = {"model": model_name, "format": fmt, "prior": prior, "method": method,
                "epochs": epochs, "scratch_epochs": scratch_epochs, "max_rank": max_rank,
                "batch_size": batch_size, "lr": lr, "scratch_lr": scratch_lr,
                "particles": num_particles, "threshold": threshold, "rotate": rotate,
                "seed": seed, "calibrate": calibrate, "min_ratio": min_ratio}
    net_log = _fit(bnet, data, method, calibrate, min_ratio, threshold,
                   _model_config(settings, data), out, epochs=epochs, batch_size=batch_size,
                   lr=lr, seed=seed, progress=progress)
    network = _evaluate(bnet, model, data, method, threshold, rotate, ranks_before)
    network.update(net_log["calibration"])
    network["metrics"] = {"dense": network["metrics"]["dense"], "decomposed": decomposed,
                          **{k: v for k, v in network["metrics"].items() if k != "dense"}}
    seconds = {"finetune": net_log["seconds"]}
    interrupted = None
    if scratch_epochs is not None:
        scratch, _ = tensorize_smaller(model, init="random", **options)
        try:
            log = fit_net(scratch, data.x_train, data.y_train, method=method,
                          epochs=scratch_epochs, batch_size=batch_size, lr=scratch_lr,
                          seed=seed, progress=progress)
        except RunInterrupted as err:  # the fine-tune is done: write its run folder first
            interrupted = str(err)
        else:
            scratch.prune(threshold)
            network["metrics"]["scratch_pruned"] = metrics.summarize(
                scratch.predict_proba(data.x_test), data.y_test)
            seconds["scratch"] = log["seconds"]
    notes = _kept_dense_notes(kept_dense)
    if interrupted is not None:
        notes.append(f"the run from scratch was interrupted ({interrupted}); its accuracy and "
                     f"time are missing")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    network.update(kept_dense=kept_dense, warnings=notes, train_seconds=seconds,
                   training={"mode": "finetune", "optimizer": "Adam", "schedule": "cosine",
                             "lr": lr, "epochs": epochs, "scratch_epochs": scratch_epochs,
                             "scratch_lr": scratch_lr,
                             "batch_size": batch_size, "seed": seed})
    _write_outputs(out, bnet, network, settings, data)
    if interrupted is not None:
        raise RunInterrupted(f"{interrupted} (the run from scratch); the fine-tune finished and "
                             f"its run folder {out} is complete without it")
    return network


def _check_calibrate(calibrate, min_ratio) -> None:
    checks.flag("calibrate", calibrate)
    if min_ratio is None:
        return
    checks.real_number("min_ratio", min_ratio)
    if not calibrate:
        raise ValueError(f"min_ratio: bounds the candidates that calibrate chooses among; got "
                         f"calibrate={calibrate!r}")


def _fit(bnet: BayesianNet, data: ImageData, method: str, calibrate: bool,
         min_ratio: float | None, threshold: float, config: dict, out: Path,
         **options) -> dict:
    """``fit_net`` on the training examples, after a choice on a validation split when
    ``calibrate`` (SGHMC's settings, or the prior's weight for the other methods); the log
    gets ``"calibration"``: the choice and its scores, or nothing.

    Interrupted in that fit, the network reached so far is saved to :data:`INTERRUPTED_MODEL`
    in ``out`` (with ``config``) before ``RunInterrupted`` goes on; interrupted in the choice,
    nothing is saved (its networks are fits to a split).
    """
    chosen = {}
    if calibrate:
        if method == "sghmc":
            key = "sghmc_settings"
            choice = choose_sghmc_settings(bnet, data.x_train, data.y_train,
                                           min_ratio=min_ratio, **options)
        else:
            key = "prior_weight_choice"
            choice = choose_prior_weight(bnet, data.x_train, data.y_train, method=method,
                                         min_ratio=min_ratio, threshold=threshold, **options)
        choice["min_ratio"] = min_ratio
        chosen = {key: {**choice["settings"],
                        **{k: v for k, v in choice.items() if k != "settings"}}}
        options.update(choice["settings"])
    try:
        log = fit_net(bnet, data.x_train, data.y_train, method=method, **options)
    except RunInterrupted as err:
        raise RunInterrupted(f"{err}; {_save_interrupted(bnet, out, config, str(err))}") from None
    return {**log, "calibration": chosen}


def _save_interrupted(bnet: BayesianNet, out: Path, config: dict, message: str) -> str:
    """Save particle 0 of an interrupted network, unpruned, as ``model.pt`` is saved; say
    where, or why not (a failed save must not hide the interrupt)."""
    path = out / INTERRUPTED_MODEL
    try:
        save_exported(bnet.export(0), path, {**config, "interrupted": message})
    except OSError as err:
        return f"could not save the network so far: {err}"
    return f"the network so far (particle 0, unpruned) saved to {path}"


def _model_config(settings: dict, data: ImageData) -> dict:
    """What ``model.pt`` stores beside the weights: the run's settings and the data's shape."""
    return {**settings, "input_shape": list(data.input_shape), "classes": data.classes}


def _write_outputs(out: Path, bnet: BayesianNet, network: dict, settings: dict,
                   data: ImageData) -> None:
    """The run folder of a compression: exported model, ranks, reliability, summary, run.json."""
    fmt, method = settings["format"], settings["method"]
    save_exported(bnet.export(0), out / "model.pt", _model_config(settings, data))
    files = [out / "model.pt", _write_ranks(out / "ranks.csv", network["layers"]),
             save_png(reliability_figure(network["reliability"], f"{data.name}: {fmt} {method}"),
                      out / "reliability.png"),
             atomic_write(out / "network.json", json.dumps(to_jsonable(network), indent=2)),
             atomic_write(out / "summary.md", summary_markdown(network, method, data.name))]
    write_run(out, "network", settings=settings, data=data.info(), files=files)


def _ratio_bound(choice: dict) -> str:
    return (f" among those compressing by {choice['min_ratio']:g}x"
            if choice.get("min_ratio") is not None else "")


def _ratio_warning(choice: dict, what: str) -> list[str]:
    if choice.get("min_ratio_met", True):
        return []
    return [f"**Warning:** no {what} compressed by {choice['min_ratio']:g}x; the most "
            "compressed one was used."]


def summary_markdown(network: dict, method: str, data_name: str = "") -> str:
    """A Markdown summary of a ``network.json``: warnings, the training budget, accuracy / NLL /
    ECE of the dense and compressed networks, and per layer its ranks and ratio."""
    lines = [f"# Compressed network{': ' + data_name if data_name else ''}", ""]
    lines += [f"**Warning:** {w}" for w in network.get("warnings", [])]
    b = network.get("training", {})
    if b.get("mode") == "finetune":
        scratch = (f"; the run from scratch {b['scratch_epochs']} epochs at lr "
                   f"{b['scratch_lr']:g}" if b.get("scratch_epochs") else "")
        lines += ["", f"The user's trained network (\"dense\"), decomposed (\"decomposed\") and "
                      f"fine-tuned: {b['optimizer']}, lr {b['lr']:g}, {b['schedule']} schedule, "
                      f"{b['epochs']} epochs, batch {b['batch_size']}, seed {b['seed']}{scratch}."]
        secs = network.get("train_seconds", {})
        lines += [f"Wall time: fine-tune {secs['finetune']:.1f} s"
                  + (f", from scratch {secs['scratch']:.1f} s" if "scratch" in secs else "")
                  + "."]
    elif b:
        dense_lr = b.get("dense_lr", b["lr"])
        alike, rate = (("alike", f"lr {b['lr']:g}") if dense_lr == b["lr"] else
                       ("alike but for the rate",
                        f"lr {b['lr']:g} (the dense baseline: {dense_lr:g})"))
        lines += ["", f"Both networks trained {alike}: {b['optimizer']}, {rate}, "
                      f"{b['schedule']} schedule, {b['epochs']} epochs, batch {b['batch_size']}, "
                      f"seed {b['seed']}."]
    weight = network.get("prior_weight_choice")
    if weight:
        lines += [f"Prior weight chosen on {weight['validation_size']} held-out training "
                  f"examples (lowest NLL of {len(weight['scores'])} candidates"
                  f"{_ratio_bound(weight)}): {weight['prior_weight']:g} "
                  f"({weight['seconds']:.1f} s)."]
        lines += _ratio_warning(weight, "candidate weight")
    chosen = network.get("sghmc_settings")
    if chosen:
        lines += [f"SGHMC settings chosen on {chosen['validation_size']} held-out training "
                  f"examples (lowest NLL of {len(chosen['scores'])} candidates"
                  f"{_ratio_bound(chosen)}): step {chosen['sghmc_lr']:g}, temperature "
                  f"{chosen['temperature']:g}, warm-up {chosen['burnin']:g} of the epochs, "
                  f"prior weight {chosen.get('prior_weight', 1.0):g} "
                  f"({chosen['seconds']:.1f} s)."]
        lines += _ratio_warning(chosen, "candidate")
    lines += ["", "| model | accuracy | NLL | ECE |", "|---|---|---|---|"]
    for name, m in network["metrics"].items():
        label = "dense" if name == "dense" else name.replace("_", " ")
        lines.append(f"| {label} | {m['accuracy']:.4f} | {m['nll']:.4f} | {m['ece']:.4f} |")
    lines += ["", "| layer | format | ranks before | ranks after | dense params | "
                  "compressed params | ratio |", "|---|---|---|---|---|---|---|"]
    for r in network["layers"]:
        lines.append(f"| {r['name']} | {r['format']} | {_ranks_text(r['ranks_before'])} | "
                     f"{_ranks_text(r['ranks_after'])} | {r['dense_params']:,} | "
                     f"{r['compressed_params']:,} | {r['ratio']:.2f} |")
    for r in network.get("kept_dense", []):
        lines.append(f"| {r['name']} | dense (kept) | - | - | {r['dense_params']:,} | "
                     f"{r['dense_params']:,} | 1.00 |")
    lines += ["", f"Tensorized layers {network['linear_ratio']:.1f}x smaller; whole model "
                  f"{network['model_ratio']:.1f}x."]
    return "\n".join(lines) + "\n"


def _kept_dense_notes(kept_dense: list[dict]) -> list[str]:
    """One warning per layer that :func:`tensorize_smaller` kept dense."""
    return [f"layer {row['name']} kept dense: tensorized it would have "
            f"{row['compressed_params']:,} parameters for {row['dense_params']:,} dense "
            f"(ratio {row['ratio']:.2f} < 1)" for row in kept_dense]


def _ranks_text(ranks) -> str:
    return "x".join(map(str, ranks))


def _evaluate(bnet: BayesianNet, dense: nn.Module, data: ImageData, method: str,
              threshold: float, rotate: float, ranks_before: dict) -> dict:
    """Prune ``bnet`` and compare it with ``dense``: layers, metrics, reliability, shift."""
    x, y = data.x_test, data.y_test
    p_dense = predict_dense(dense, x)
    probs = bnet.predict_proba(x)
    pruned = bnet.prune(threshold)
    probs_pruned = bnet.predict_proba(x)
    shifted = metrics.rotate(x, rotate)
    comp = bnet.compression()
    return {
        "layers": _layer_table(bnet, comp, ranks_before, pruned),
        "linear_ratio": comp["linear_ratio"], "model_ratio": comp["model_ratio"],
        "metrics": {"dense": metrics.summarize(p_dense, y), method: metrics.summarize(probs, y),
                    f"{method}_pruned": metrics.summarize(probs_pruned, y)},
        "reliability": {"dense": metrics.reliability(p_dense, y),
                        method: metrics.reliability(probs, y)},
        "shift": {"description": f"test images rotated by {rotate} degrees",
                  "dense": _shift(p_dense, predict_dense(dense, shifted), y),
                  method: _shift(probs_pruned, bnet.predict_proba(shifted), y)},
        "prune_max_abs_change": float((probs_pruned - probs).abs().max()),
    }


def _shift(p_in, p_shifted, labels) -> dict:
    return {"entropy_in": float(metrics.entropy(p_in).mean()),
            "entropy_shifted": float(metrics.entropy(p_shifted).mean()),
            "accuracy_shifted": metrics.accuracy(p_shifted, labels)}


def _layer_table(bnet: BayesianNet, comp: dict, ranks_before: dict, pruned: dict) -> list[dict]:
    table = []
    for row in comp["layers"]:
        m = bnet.tensorized()[row["name"]]
        if hasattr(m, "in_shape"):
            in_shape, out_shape = list(m.in_shape), list(m.out_shape)
        else:
            in_shape, out_shape = [m.in_channels] + list(m.kernel_size), [m.out_channels]
        table.append({"name": row["name"], "format": row["format"], "in_shape": in_shape,
                      "out_shape": out_shape, "ranks_before": ranks_before[row["name"]],
                      "ranks_after": pruned[row["name"]]["ranks_after"],
                      "dense_params": row["dense_params"],
                      "compressed_params": row["compressed_params"], "ratio": row["ratio"]})
    return table


def _write_ranks(path: Path, table: list[dict]) -> Path:
    """``ranks.csv``: one row per tensorized layer, ranks written ``1x3x5x1``."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["name", "format", "ranks_before", "ranks_after", "dense_params",
                "compressed_params", "ratio"])
    for r in table:
        w.writerow([r["name"], r["format"], "x".join(map(str, r["ranks_before"])),
                    "x".join(map(str, r["ranks_after"])), r["dense_params"],
                    r["compressed_params"], f"{r['ratio']:.2f}"])
    return atomic_write(path, buf.getvalue())
