"""``bayestensor compress``: train and compress an MLP or small CNN on an image dataset."""

from __future__ import annotations

import warnings

import click

from bayestensor.data.images import load_dataset
from bayestensor.nets.layers import LINEAR_FORMATS
from bayestensor.nets.train import METHODS
from bayestensor.nets.workflow import ARCHS, run_compress
from bayestensor.cli import options as opt
from bayestensor.cli.errors import Command


@click.command("compress", cls=Command)
@click.argument("data")
@click.option("--arch", type=click.Choice(ARCHS), default="mlp", show_default=True)
@click.option("--format", "fmt", type=click.Choice(LINEAR_FORMATS), default="ttm", show_default=True)
@opt.prior_option
@click.option("--method", type=click.Choice(METHODS), default="map", show_default=True)
@click.option("--epochs", type=opt.POSITIVE, default=10, show_default=True)
@opt.max_rank_option(8, per_dim=False)
@click.option("--hidden", type=opt.POSITIVE, default=512, show_default=True)
@click.option("--batch-size", type=opt.POSITIVE, default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2, show_default=True,
              help="Adam learning rate of the dense baseline and the compressed net alike.")
@click.option("--particles", type=opt.POSITIVE, default=4, show_default=True,
              help="SVGD particles / SGHMC chains.")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=1e-2,
              show_default=True, help="Prune slices with weight norm below threshold x largest.")
@click.option("--rotate", type=float, default=45.0, show_default=True,
              help="Rotation (degrees) of the shifted test inputs.")
@opt.quiet_option
@opt.run_options("compress")
def compress(data, arch, fmt, prior, method, epochs, max_rank, hidden, batch_size, lr, particles,
             threshold, rotate, quiet, seed, out, force, with_report):
    """Train and compress an MLP or small CNN on DATA ('digits', a .npz with images and labels,
    or a directory of MNIST IDX files), next to a dense baseline trained alike (same optimizer,
    learning rate, schedule, epochs and batches); write model.pt, ranks.csv, reliability.png,
    network.json, summary.md and run.json to --out."""
    dataset = load_dataset(data)
    out = opt.open_run_dir(out, "compress", force)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = run_compress(dataset, out, arch=arch, fmt=fmt, prior=prior, method=method,
                           epochs=epochs, max_rank=max_rank, hidden=hidden,
                           batch_size=batch_size, lr=lr, particles=particles,
                           threshold=threshold, rotate=rotate, seed=seed,
                           progress=False if quiet else None)
    for name, m in net["metrics"].items():
        click.echo(f"{name:<16} accuracy {m['accuracy']:.4f}  NLL {m['nll']:.4f}  "
                   f"ECE {m['ece']:.4f}")
    click.echo(f"linear ratio {net['linear_ratio']:.1f}x  model ratio {net['model_ratio']:.1f}x")
    for message in dict.fromkeys(str(w.message) for w in caught):
        click.echo(f"warning: {message}", err=True)
    click.echo(f"wrote {out}")
    opt.echo_report(out, with_report)
