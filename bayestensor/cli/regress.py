"""``bayestensor regress``: low-rank tensor regression on an ``.npz`` file of ``X`` and ``y``.

The command object is :data:`regress`; the main ``bayestensor`` group registers it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from bayestensor.formats import FORMATS
from bayestensor.infer import METHODS, fit
from bayestensor.models.regression import LIKELIHOODS, TensorRegression, plot_weights
from bayestensor.priors import PRIORS

REGRESSION_FORMATS = sorted(f for f in FORMATS if f != "ttm")


def _rank_arg(text: str):
    try:
        parts = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        parts = []
    if not parts or any(p < 1 for p in parts):
        raise click.BadParameter(f"expected a positive integer or a comma list, got {text!r}",
                                 param_hint="--max-rank")
    return parts[0] if len(parts) == 1 else parts


def _read_npz(path: Path) -> dict:
    if path.suffix != ".npz":
        raise click.BadParameter(f"expected an .npz file with arrays X and y, got {path.name}",
                                 param_hint="FILE")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("X", "y") if k not in z.files]
        if missing:
            raise click.BadParameter(f"{path.name} has arrays {z.files}; missing {missing} "
                                     "(X: inputs (n, ...), y: responses (n,) or (n, k))",
                                     param_hint="FILE")
        return {k: np.asarray(z[k]) for k in z.files}


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


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(REGRESSION_FORMATS), default="cp",
              show_default=True, help="Low-rank format of the coefficient tensor W.")
@click.option("--prior", type=click.Choice(PRIORS), default="gamma", show_default=True)
@click.option("--method", type=click.Choice(METHODS), default="sghmc", show_default=True)
@click.option("--max-rank", default="5", show_default=True, help="Int or comma list per rank dim.")
@click.option("--likelihood", type=click.Choice(LIKELIHOODS), default="gaussian",
              show_default=True, help="bernoulli: y holds 0/1 labels.")
@click.option("--num-samples", type=int, default=None, help="Draws per chain / particles.")
@click.option("--num-warmup", type=int, default=None, help="Burn-in steps (SGHMC, NUTS).")
@click.option("--num-chains", type=int, default=1, show_default=True)
@click.option("--batch-size", type=int, default=None, help="Mini-batch size (default: all data).")
@click.option("--steps", type=int, default=None, help="Optimization / SVGD steps.")
@click.option("--init", type=click.Choice(["svd", "map", "random"]), default="svd",
              show_default=True, help="Starting point: data-driven (svd), its MAP, or random. "
              "SGHMC and SVGD run their own MAP from it first.")
@click.option("--level", type=float, default=0.9, show_default=True, help="Credible level.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/regress", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def regress(file, fmt, prior, method, max_rank, likelihood, num_samples, num_warmup, num_chains,
            batch_size, steps, init, level, seed, out, quiet):
    """Bayesian low-rank tensor regression of y on X from FILE (.npz with X and y).

    X has shape (n, I_1, ..., I_N) and y shape (n,) (or (n, k) for k responses); optional
    arrays X_test (and y_test) are predicted (and scored) too. Writes to --out:
    predictions.npz (mean, sd, lower, upper per input; test_* for X_test), W_mean.npy,
    W_sd.npy, W_mean.png / W_sd.png when an input is 2-D, posterior.pt and summary.json.

    For --likelihood bernoulli the mean is the predictive probability of y=1 and the interval
    is a credible interval of that probability.
    """
    if not 0 < level < 1:
        raise click.BadParameter(f"expected a number in (0, 1), got {level}", param_hint="--level")
    arrays = _read_npz(Path(file))
    X, y = arrays["X"], arrays["y"]
    if X.ndim < 2:
        raise click.UsageError(f"X: expected shape (n, I_1, ..., I_N), got {X.shape}")
    n_outputs = int(y.shape[1]) if y.ndim == 2 else None
    options = {}
    if steps is not None and method in ("map", "vi", "svgd"):
        options["num_steps"] = steps
    if num_warmup is not None and method in ("sghmc", "nuts"):
        options["num_warmup"] = num_warmup
    try:
        model = TensorRegression(X.shape[1:], format=fmt, max_rank=_rank_arg(max_rank),
                                 prior=prior, likelihood=likelihood, n_outputs=n_outputs)
        model.set_data((X, y))
        if "X_test" in arrays:
            model.check_predict_inputs(arrays["X_test"])
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    start = time.perf_counter()
    # fit(method="map") from the MAP start would optimize twice.
    start_from = "svd" if (method == "map" and init == "map") else init
    post = fit(model, (X, y), method=method, seed=seed, num_samples=num_samples,
               num_chains=num_chains, batch_size=batch_size, init=start_from,
               progress=not quiet, **options)
    seconds = time.perf_counter() - start
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    preds = _predictions(post, X, level, "")
    summary_metrics = {"train": _metrics(model, preds["mean"], preds["lower"], preds["upper"], y)}
    if "X_test" in arrays:
        preds.update(_predictions(post, arrays["X_test"], level, "test_"))
        if "y_test" in arrays:
            summary_metrics["test"] = _metrics(model, preds["test_mean"], preds["test_lower"],
                                               preds["test_upper"], arrays["y_test"])
    np.savez(out / "predictions.npz", level=level, **preds)
    w_mean, w_sd = model.weight_posterior(post)
    np.save(out / "W_mean.npy", w_mean)
    np.save(out / "W_sd.npy", w_sd)
    images = []
    if len(model.input_shape) == 2:
        for k in range(n_outputs or 1):
            mean_k = w_mean[..., k] if n_outputs else w_mean
            sd_k = w_sd[..., k] if n_outputs else w_sd
            tag = f"_{k}" if n_outputs else ""
            plot_weights(mean_k, path=out / f"W_mean{tag}.png")
            _plot_sd(sd_k, out / f"W_sd{tag}.png")
            plot_weights(mean_k, sd_k, path=out / f"W{tag}.png")
            images += [f"W_mean{tag}.png", f"W_sd{tag}.png", f"W{tag}.png"]
    post.save(out / "posterior.pt")
    ranks = post.effective_rank()
    intercept = model.intercepts(post.flat_samples()).mean(0)
    summary = {
        "file": str(file), "n": int(X.shape[0]), "input_shape": list(model.input_shape),
        "n_outputs": n_outputs, "format": fmt, "prior": prior, "method": method,
        "likelihood": likelihood, "max_rank": model.max_rank, "init": init, "seed": seed,
        "found_rank_mode": ranks.mode().tolist(), "rank_distribution": ranks.distribution(0),
        "rank_threshold": ranks.threshold, "intercept_mean": intercept.tolist(),
        "level": level, "metrics": summary_metrics, "seconds": seconds,
        "files": ["predictions.npz", "W_mean.npy", "W_sd.npy", "posterior.pt", *images],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    from bayestensor.report import report as make_report
    from bayestensor.report.rundir import write_heldout, write_run

    write_run(out, "regression", settings={"command": "regress", "method": method, "format": fmt,
                                           "prior": prior, "likelihood": likelihood,
                                           "max_rank": model.max_rank, "seed": seed,
                                           "seconds": seconds},
              data={"file": str(file), "n": int(X.shape[0]), "input_shape": list(model.input_shape)})
    if "X_test" in arrays and "y_test" in arrays:
        write_heldout(out, inputs=arrays["X_test"], truth=np.asarray(arrays["y_test"]).reshape(-1),
                      noisy=np.asarray(arrays["y_test"]).reshape(-1))
    report_paths = make_report(out)
    click.echo(f"rank found: {ranks.mode().tolist()}  (max {model.max_rank}, {X.shape[0]} "
               f"data points, {method})")
    for split, m in summary_metrics.items():
        click.echo(f"  {split}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
    click.echo(f"wrote {out}/: " + ", ".join(summary["files"]) + ", summary.json")
    click.echo(f"report: {report_paths['html']}")


def _plot_sd(sd, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4, 3.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.asarray(sd), cmap="viridis", vmin=0.0)
    ax.set_title("posterior sd of W")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
