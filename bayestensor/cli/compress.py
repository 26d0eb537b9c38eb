"""``bayestensor compress``: train and compress an MLP or small CNN on an image dataset, or
compress a network the user already trained (``--model``)."""


from __future__ import annotations

import click

from bayestensor.data.images import load_dataset
from bayestensor.nets.calibration import (BURNINS, PRIOR_WEIGHTS, SGHMC_PRIOR_WEIGHTS,
                                          STEP_SIZES, TEMPERATURES)
from bayestensor.nets.layers import LINEAR_FORMATS
from bayestensor.nets.train import METHODS
from bayestensor.nets.user_model import PROBE_IMAGES, load_user_model
from bayestensor.nets.workflow import (ARCHS, FINETUNE_EPOCHS, FINETUNE_LR, TRAIN_LR, TRAIN_LRS,
                                       VI_LR, run_compress, run_finetune)
from bayestensor.cli import options as opt
from bayestensor.cli.errors import Command

_SGHMC_GRID = len(STEP_SIZES) * len(TEMPERATURES) * len(BURNINS) * len(SGHMC_PRIOR_WEIGHTS)
#: Epochs of a training run (a fine-tune of the user's model: ``FINETUNE_EPOCHS``).
TRAIN_EPOCHS = 10


@click.command("compress", cls=Command)
@click.argument("data")
@click.option("--arch", type=click.Choice(ARCHS), default="mlp", show_default=True)
@click.option("--format", "fmt", type=click.Choice(LINEAR_FORMATS), default="ttm", show_default=True)
@opt.prior_option
@click.option("--method", type=click.Choice(METHODS), default="map", show_default=True)
@click.option("--epochs", type=opt.POSITIVE, default=None,
              help=f"Training epochs [default: {TRAIN_EPOCHS}; with --model, fine-tuning "
                   f"epochs, default {FINETUNE_EPOCHS}].")
@opt.max_rank_option(None, per_dim=False,
                     default_text="8; 40 for --format cp trained from scratch")
@click.option("--hidden", type=opt.POSITIVE, default=512, show_default=True)
@click.option("--batch-size", type=opt.POSITIVE, default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Adam learning rate of the compressed net [default: "
                   f"{TRAIN_LRS['mlp'][0]} for the mlp (chosen on validation), "
                   f"{TRAIN_LRS['cnn'][0]} for the cnn (not validated), {VI_LR} with --method "
                   f"vi; with --model, of the fine-tune, {FINETUNE_LR}, while --scratch-epochs "
                   f"trains at {TRAIN_LR}].")
@click.option("--dense-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Adam learning rate of the dense baseline [default: {TRAIN_LRS['mlp'][1]} "
                   f"for the mlp (chosen on validation), {TRAIN_LRS['cnn'][1]} for the cnn "
                   f"(not validated)].")
@click.option("--particles", type=opt.POSITIVE, default=4, show_default=True,
              help="SVGD particles / SGHMC chains.")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=1e-2,
              show_default=True, help="Prune slices with weight norm below threshold x largest.")
@click.option("--rotate", type=float, default=45.0, show_default=True,
              help="Rotation (degrees) of the shifted test inputs.")
@click.option("--model", "model_spec", default=None,
              help="Compress this trained network instead of training one: a TorchScript file "
                   "of an nn.Sequential, or 'module:factory' / 'file.py:factory' with "
                   "--state-dict.")
@click.option("--state-dict", type=click.Path(dir_okay=False), default=None,
              help="State dict (torch.save) of the --model factory's network.")
@click.option("--scratch-epochs", type=opt.POSITIVE, default=None,
              help="With --model: also train the compressed network from a random start for "
                   "this many epochs, to compare accuracy and wall time.")
@click.option("--calibrate", is_flag=True,
              help=f"Before the fit, choose on 10% of the training data: with --method sghmc "
                   f"its step, temperature, warm-up and the log prior's weight (a grid of "
                   f"{_SGHMC_GRID} candidates sharing "
                   f"{len(BURNINS) * len(SGHMC_PRIOR_WEIGHTS)} warm-ups; weights "
                   f"{', '.join(f'{w:g}' for w in SGHMC_PRIOR_WEIGHTS)}); with the other "
                   f"methods the log prior's weight (one fit per weight of "
                   f"{', '.join(f'{w:g}' for w in PRIOR_WEIGHTS)}).")
@click.option("--min-ratio", type=click.FloatRange(0, min_open=True), default=None,
              help="With --calibrate: only candidates whose pruned network compresses the "
                   "whole model at least this much are eligible.")
@opt.quiet_option
@opt.run_options("compress")
def compress(data, arch, fmt, prior, method, epochs, max_rank, hidden, batch_size, lr, dense_lr,
             particles, threshold, rotate, model_spec, state_dict, scratch_epochs, calibrate,
             min_ratio, quiet, seed, out, force, with_report):
    """Train and compress an MLP or small CNN on DATA ('digits', a .npz with images and labels,
    or a directory of MNIST IDX files), next to a dense baseline trained alike (same optimizer,
    schedule, epochs and batches; each network at its own learning rate); write model.pt,
    ranks.csv, reliability.png, network.json, summary.md and run.json to --out. With --model,
    decompose the user's trained network instead, fine-tune it on DATA and report it before
    and after."""
    if model_spec is None and (state_dict is not None or scratch_epochs is not None):
        raise click.UsageError("--state-dict and --scratch-epochs go with --model")
    if min_ratio is not None and not calibrate:
        raise click.UsageError("--min-ratio bounds the candidates that --calibrate chooses "
                               "among; give --calibrate")
    ctx = click.get_current_context()
    given = [f"--{name}" for name in ("arch", "hidden")
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if model_spec is not None and given:
        raise click.UsageError(f"{' and '.join(given)} describe a network to train; with --model "
                               "the architecture is the model's own")
    if model_spec is not None and dense_lr is not None:
        raise click.UsageError("--dense-lr trains the dense baseline; with --model the dense "
                               "network is the user's, already trained")
    dataset = load_dataset(data)
    user_model = None
    if model_spec is not None:
        user_model = load_user_model(model_spec, state_dict,
                                     probe=dataset.x_test[:PROBE_IMAGES], classes=dataset.classes)
    out = opt.open_run_dir(out, "compress", force)
    progress = opt.show_progress(quiet)
    if user_model is not None:
        net = run_finetune(dataset, out, user_model, fmt=fmt, prior=prior, method=method,
                           epochs=epochs or FINETUNE_EPOCHS, max_rank=max_rank,
                           batch_size=batch_size, lr=lr or FINETUNE_LR,
                           particles=particles, threshold=threshold, rotate=rotate,
                           seed=seed, scratch_epochs=scratch_epochs, model_name=model_spec,
                           calibrate=calibrate, min_ratio=min_ratio, progress=progress)
    else:
        net = run_compress(dataset, out, arch=arch, fmt=fmt, prior=prior, method=method,
                           epochs=epochs or TRAIN_EPOCHS, max_rank=max_rank, hidden=hidden,
                           batch_size=batch_size, lr=lr, dense_lr=dense_lr,
                           particles=particles,
                           threshold=threshold, rotate=rotate, seed=seed,
                           calibrate=calibrate, min_ratio=min_ratio, progress=progress)
    for name, m in net["metrics"].items():
        click.echo(f"{name:<16} accuracy {m['accuracy']:.4f}  NLL {m['nll']:.4f}  "
                   f"ECE {m['ece']:.4f}")
    click.echo(f"linear ratio {net['linear_ratio']:.1f}x  model ratio {net['model_ratio']:.1f}x")
    if "prior_weight_choice" in net:
        click.echo(f"prior weight {net['prior_weight_choice']['prior_weight']:g} (chosen on a "
                   f"validation split)")
    if "sghmc_settings" in net:
        chosen = net["sghmc_settings"]
        click.echo(f"SGHMC step {chosen['sghmc_lr']:g}, temperature {chosen['temperature']:g}, "
                   f"warm-up {chosen['burnin']:g}, prior weight {chosen['prior_weight']:g} "
                   f"(chosen on a validation split)")
    for name, seconds in net["train_seconds"].items():
        click.echo(f"{name} wall time {seconds:.1f} s")
    click.echo(f"wrote {out}")
    opt.echo_report(out, with_report)
