"""``bayestensor regress``: low-rank tensor regression on an ``.npz`` file of ``X`` and ``y``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from bayestensor.formats import FORMATS
from bayestensor.infer import METHODS, fit
from bayestensor.io import atomic_write
from bayestensor.models.regression import LIKELIHOODS, TensorRegression
from bayestensor.report.rundir import save_npz, write_heldout, write_run
from bayestensor.viz.figures import save_png
from bayestensor.viz.images import matrix_figure
from bayestensor.viz.regression import plot_weights
from bayestensor.cli import options as opt
from bayestensor.cli.complete import check_sizes
from bayestensor.cli.errors import Command
from bayestensor.cli.files import read_xy

REGRESSION_FORMATS = sorted(f for f in FORMATS if f != "ttm")


def _predictions(post, X, level: float, prefix: str) -> dict:
    pred = post.predict(X)
    kind = "mean" if post.model.likelihood == "bernoulli" else "predictive"
    lower, upper = pred.interval(level, kind=kind)
    n = X.shape[0]
    shape = (n, -1) if post.model.is_vector else (n,)
    return {f"{prefix}mean": pred.mean.reshape(shape), f"{prefix}sd": pred.sd.reshape(shape),
            f"{prefix}lower": lower.reshape(shape), f"{prefix}upper": upper.reshape(shape)}


def _metrics(model, mean, lower, upper, y) -> dict:
    y = np.asarray(y, dtype=np.float64).reshape(mean.shape)
    if model.likelihood == "bernoulli":
        return {"accuracy": float(np.mean((mean > 0.5) == (y > 0.5)))}
    return {"rmse": float(np.sqrt(np.mean((mean - y) ** 2))),
            "coverage": float(np.mean((y >= lower) & (y <= upper)))}


@click.command(cls=Command)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(REGRESSION_FORMATS), default="cp",
              show_default=True, help="Low-rank format of the coefficient tensor W.")
@opt.prior_option
@click.option("--method", type=click.Choice(METHODS), default="sghmc", show_default=True)
@opt.max_rank_option("5")
@click.option("--likelihood", type=click.Choice(LIKELIHOODS), default="gaussian",
              show_default=True, help="bernoulli: y holds 0/1 labels.")
@opt.num_samples_option
@opt.num_warmup_option
@opt.num_chains_option
@click.option("--batch-size", type=opt.POSITIVE, default=None,
              help="Mini-batch size (default: all data).")
@opt.steps_option()
@click.option("--init", type=click.Choice(["svd", "map", "random"]), default="svd",
              show_default=True, help="Starting point: data-driven (svd), its MAP, or random. "
              "SGHMC and SVGD run their own MAP from it first.")
@opt.level_option
@opt.run_options("regress")
@opt.quiet_option
def regress(file, fmt, prior, method, max_rank, likelihood, num_samples, num_warmup, num_chains,
            batch_size, steps, init, level, seed, out, force, with_report, quiet):
    """Bayesian low-rank tensor regression of y on X from FILE (.npz with X and y).

    X has shape (n, I_1, ..., I_N) and y shape (n,) (or (n, k) for k responses); optional
    arrays X_test (and y_test) are predicted (and scored) too. Writes to --out:
    predictions.npz (mean, sd, lower, upper per input; test_* for X_test), W_mean.npy,
    W_sd.npy, W_mean.png / W_sd.png when an input is 2-D, posterior.pt and summary.json.

    For --likelihood bernoulli the mean is the predictive probability of y=1 and the interval
    is a credible interval of that probability.
    """
    num_chains = opt.chains_for(method, num_chains)
    check_sizes(method, steps=steps, num_warmup=num_warmup, num_samples=num_samples)
    arrays = read_xy(file)
    X, y = arrays["X"], arrays["y"]
    n_outputs = int(y.shape[1]) if y.ndim == 2 else None
    options = {}
    if steps is not None:
        options["num_steps"] = steps
    if num_warmup is not None:
        options["num_warmup"] = num_warmup
    model = TensorRegression(X.shape[1:], format=fmt, max_rank=max_rank, prior=prior,
                             likelihood=likelihood, n_outputs=n_outputs)
    try:  # the arrays are the file's: say which file
        model.set_data((X, y))
        if "X_test" in arrays:
            model.check_predict_inputs(arrays["X_test"], "X_test")
    except ValueError as err:
        raise ValueError(f"{file}: {err}") from None
    out = opt.open_run_dir(out, "regress", force)
    start = time.perf_counter()
    # fit(method="map") from the MAP start would optimize twice.
    start_from = "svd" if (method == "map" and init == "map") else init
    with opt.chains_echoed():
        post = fit(model, (X, y), method=method, seed=seed, num_samples=num_samples,
                   num_chains=num_chains, batch_size=batch_size, init=start_from,
                   progress=opt.show_progress(quiet), **options)
    seconds = time.perf_counter() - start
    preds = _predictions(post, X, level, "")
    summary_metrics = {"train": _metrics(model, preds["mean"], preds["lower"], preds["upper"], y)}
    if "X_test" in arrays:
        preds.update(_predictions(post, arrays["X_test"], level, "test_"))
        if "y_test" in arrays:
            summary_metrics["test"] = _metrics(model, preds["test_mean"], preds["test_lower"],
                                               preds["test_upper"], arrays["y_test"])
    w_mean, w_sd = model.weight_posterior(post)
    files = [save_npz(out / "predictions.npz", {"level": level, **preds}),
             _save_npy(out / "W_mean.npy", w_mean), _save_npy(out / "W_sd.npy", w_sd),
             post.save(out / "posterior.pt")]
    if len(model.input_shape) == 2:
        files += _weight_figures(out, w_mean, w_sd, n_outputs)
    if "X_test" in arrays and "y_test" in arrays:
        # y_test are observations (with noise), not noise-free values: written as the truth
        # alone, the report labels and scores them as held-out observations.
        y_test = np.asarray(arrays["y_test"]).reshape(-1)
        files.append(write_heldout(out, inputs=arrays["X_test"], truth=y_test))
    ranks = post.effective_rank()
    intercept = model.intercepts(post.flat_samples()).mean(0)
    names = [Path(f).name for f in files]
    summary = {
        "file": str(file), "n": int(X.shape[0]), "input_shape": list(model.input_shape),
        "n_outputs": n_outputs, "format": fmt, "prior": prior, "method": method,
        "likelihood": likelihood, "max_rank": model.max_rank, "init": init, "seed": seed,
        "found_rank_mode": ranks.mode().tolist(), "rank_distribution": ranks.distribution(0),
        "rank_threshold": ranks.threshold, "intercept_mean": intercept.tolist(),
        "level": level, "metrics": summary_metrics, "seconds": seconds,
        "files": [n for n in names if n != "heldout.npz"], "convergence": opt.convergence(
            post, arrays["X_test"] if {"X_test", "y_test"} <= set(arrays) else None),
    }
    files.append(atomic_write(out / "summary.json", json.dumps(summary, indent=2)))
    write_run(out, "regression", files=files,
              settings={"command": "regress", "method": method, "format": fmt, "prior": prior,
                        "likelihood": likelihood, "max_rank": model.max_rank, "seed": seed,
                        "seconds": seconds},
              data={"file": str(file), "n": int(X.shape[0]), "input_shape": list(model.input_shape)})
    click.echo(f"rank found: {ranks.mode().tolist()}  (max {model.max_rank}, {X.shape[0]} "
               f"data points, {method})")
    for split, m in summary_metrics.items():
        click.echo(f"  {split}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
    opt.echo_convergence(summary["convergence"])
    click.echo(f"wrote {out}/: " + ", ".join(summary["files"]) + ", summary.json")
    opt.echo_report(out, with_report)


def _save_npy(path: Path, array) -> Path:
    np.save(path, array)
    return path


def _weight_figures(out: Path, w_mean, w_sd, n_outputs) -> list[Path]:
    """``W_mean*.png``, ``W_sd*.png`` and ``W*.png`` (mean and sd side by side) per output."""
    paths = []
    for k in range(n_outputs or 1):
        mean_k = w_mean[..., k] if n_outputs else w_mean
        sd_k = w_sd[..., k] if n_outputs else w_sd
        tag = f"_{k}" if n_outputs else ""
        paths.append(save_png(plot_weights(mean_k), out / f"W_mean{tag}.png"))
        paths.append(save_png(matrix_figure(sd_k, "posterior sd of W"), out / f"W_sd{tag}.png"))
        paths.append(save_png(plot_weights(mean_k, sd_k), out / f"W{tag}.png"))
    return paths
