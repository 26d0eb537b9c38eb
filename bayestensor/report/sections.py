"""Report sections: one function per section, each returning a section dict.

A section is ``{"key", "title", "html", "markdown", "numbers", "warnings", "figures"}``:
``html``/``markdown`` hold the text and tables, ``figures`` is a list of
``(file_name, caption, png_bytes)`` that :mod:`bayestensor.report.html` embeds (HTML) or links
(Markdown), ``numbers`` is every number shown (JSON-safe) and ``warnings`` are lines for the
banner at the top of the report. A section function returns ``None`` when the run lacks its data.
"""

from __future__ import annotations

import html as _html
import math
import tempfile
from pathlib import Path

import numpy as np

from bayestensor.infer.continuation import worse_than_the_mean
from bayestensor.infer.stopping import MAX_KEPT_BYTES
from bayestensor.io import to_jsonable
from bayestensor.nets.metrics import BINARY_BINS, binary_reliability
from bayestensor.results import arviz_adapter
from bayestensor.results.convergence import (ESS_PER_CHAIN_MIN, N_KEY_ENTRIES, RHAT_APART,
                                             RHAT_MAX, check_identified, convergence_advice,
                                             entries_words, key_indices, monitored_entries,
                                             worst_rhat)
from bayestensor.results.posterior import coverage_from_pit
from bayestensor.viz import report as figures
from bayestensor.viz.calibration import coverage_figure, reliability_figure
from bayestensor.viz.figures import close, png_bytes, subplots
from bayestensor.viz.images import (band_figures, default_bands, image_completion_figures,
                                     is_band_cube, is_image)
from bayestensor.viz.ppc import plot_pit_histogram
from bayestensor.viz.regression import plot_weights

#: Credible levels whose empirical coverage is reported.
LEVELS = (0.5, 0.8, 0.9, 0.95)
#: Bins of the held-out PIT histogram.
PIT_BINS = 20
#: Held-out points drawn with their intervals (more would not be readable in one row).
N_SHOWN_POINTS = 60
#: Entries used to measure particle spread (enough for a stable mean, cheap to predict).
N_SPREAD_ENTRIES = 200
N_SPREAD_MAX = 2000


# --- building blocks ----------------------------------------------------------------------------
def fmt(v, digits: int = 4) -> str:
    """A number as short text (``–`` for None/NaN)."""
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "–"
        if f != 0 and (abs(f) >= 1e5 or abs(f) < 1e-3):
            return f"{f:.{digits - 1}e}"
        return f"{f:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x, digits) for x in v) + "]"
    return str(v)


def table(rows: list[dict], columns: list[str] | None = None, caption: str = "") -> tuple[str, str]:
    """An (HTML, Markdown) pair for a list of row dicts."""
    if not rows:
        return "", ""
    cols = columns or list(rows[0])
    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_html.escape(fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    cap = f"<caption>{_html.escape(caption)}</caption>" if caption else ""
    h = f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    md = ([f"*{caption}*", ""] if caption else []) + [
        "| " + " | ".join(str(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    md += ["| " + " | ".join(fmt(r.get(c)).replace("|", "/") for c in cols) + " |" for r in rows]
    return h, "\n".join(md)


def section(key: str, title: str, *, text=(), tables=(), figures=(), numbers=None,
            warnings=()) -> dict:
    """Assemble a section dict from paragraphs, ``(caption, rows, columns)`` tables and figures."""
    h, md = [], []
    for p in text:
        h.append(f"<p>{_html.escape(p)}</p>")
        md += [p, ""]
    for caption, rows, cols in tables:
        th, tm = table(rows, cols, caption)
        h.append(th)
        md += [tm, ""]
    return {"key": key, "title": title, "html": "\n".join(h), "markdown": "\n".join(md),
            "numbers": to_jsonable(numbers or {}), "warnings": list(warnings),
            "figures": list(figures)}


def _kv_rows(d: dict, prefix: str = "") -> list[dict]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _kv_rows(v, f"{prefix}{k}.")
        else:
            rows.append({"item": f"{prefix}{k}", "value": v})
    return rows


# --- run settings -------------------------------------------------------------------------------
def settings_section(run: dict, posterior=None) -> dict:
    """Run settings and data summary: kind, shape, observed fraction, method, seed, time, versions."""
    numbers = {"kind": run.get("kind"), "created": run.get("created"),
               "settings": run.get("settings", {}), "data": run.get("data", {}),
               "versions": run.get("versions", {})}
    if posterior is not None:
        info = posterior.info
        numbers["posterior"] = {"method": posterior.method, "chains": posterior.num_chains,
                                "draws": posterior.num_draws, "seed": info.get("seed"),
                                "seconds": info.get("seconds")}
    rows = [{"item": "kind", "value": run.get("kind")}, {"item": "created", "value": run.get("created")}]
    rows += _kv_rows(numbers["data"], "data.") + _kv_rows(numbers["settings"], "settings.")
    if posterior is not None:
        rows += _kv_rows(numbers["posterior"], "posterior.")
    vrows = [{"package": k, "version": v} for k, v in numbers["versions"].items()]
    return section("settings", "Run settings and data", numbers=numbers,
                   tables=[("run", rows, ["item", "value"]), ("versions", vrows, ["package", "version"])])


# --- sampler diagnostics ------------------------------------------------------------------------
def is_point_estimate(posterior) -> bool:
    """True for a MAP run (one point per chain, no parameter uncertainty)."""
    return posterior.method == "map" or posterior.num_draws * posterior.num_chains == 1


#: Banner line of a MAP run: its intervals carry the noise only.
MAP_POINT_WARNING = "MAP: a single point estimate with no parameter uncertainty."
MAP_WARNING = (MAP_POINT_WARNING + " Every interval in this report is noise-only, and the rank "
               "shown is the rank found at that point, not a posterior. A sampler "
               "(method='sghmc', or --method sghmc) gives intervals on the entries and a rank "
               "posterior.")


def _diversity(posterior, heldout) -> tuple[dict, list]:
    """Particle spread of SVGD/VI draws: pairwise distances and per-entry sd against the noise."""
    flat = posterior.flat_samples()
    names = [k for k in flat if k != "noise_precision"]
    blocks = []
    for k in names:
        v = flat[k].double().reshape(flat[k].shape[0], -1).numpy()
        blocks.append(np.log(v) if np.all(v > 0) else v)  # positive hyper-parameters on log scale
    x = np.concatenate(blocks, 1)
    n = x.shape[0]
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))[np.triu_indices(n, 1)]
    centre = x.mean(0)
    numbers = {"particles": n, "mean_pairwise_distance": float(dist.mean()),
               "relative_pairwise_distance": float(dist.mean() / (np.linalg.norm(centre) or 1.0)),
               "per_coordinate_sd_mean": float(x.std(0).mean())}
    ratio = None
    if posterior.model is not None and hasattr(posterior.model, "predict_entries"):
        idx = None
        if heldout is not None:
            idx = heldout.get("indices", heldout.get("inputs"))
        if idx is None:
            idx = key_indices(posterior, None, N_SPREAD_ENTRIES)
        if idx is not None:
            pred = posterior.predict(np.asarray(idx)[:N_SPREAD_MAX])
            noise = float(pred.noise_sd.double().mean())
            ratio = pred.sd_mean / (noise or 1.0)
            numbers.update(entry_sd_mean=float(pred.sd_mean.mean()), noise_sd=noise,
                           entry_sd_over_noise_sd=float(ratio.mean()))
    figs = [("diversity.png", "Particle diversity: pairwise distances and entry spread",
             png_bytes(figures.diversity_figure(dist, ratio)))]
    stats = posterior.info.get("final_kernel_stats") or {}
    for k, v in stats.items():
        try:
            numbers[f"kernel_{k}"] = float(np.asarray(v, dtype=float).mean())
        except (TypeError, ValueError):
            pass
    return numbers, figs


_SVGD_UNSETTLED = ("SVGD's particles did not settle: the Stein direction that moves them is "
                   "{:.0%} of the size of its two terms (the pull to high density and the "
                   "repulsion, which cancel at a fixed point), so these draws are not yet the "
                   "posterior's. Run more steps, or start nearer the posterior.")


def _vi_fit(info: dict) -> tuple[dict, str]:
    """How a VI fit ended (closed form: sweeps; stochastic gradients: steps), and a sentence
    saying so; the sentence becomes a warning when the fit did not converge."""
    closed = bool(info.get("vi_closed_form", False))
    length = info.get("vi_sweeps") if closed else info.get("vi_steps")
    fit = {"closed_form": closed, "sweeps" if closed else "steps": length,
           "converged": info.get("vi_converged"), "final_elbo": info.get("final_elbo"),
           "noise_starts": info.get("vi_noise_starts")}
    how = "coordinate ascent in closed form" if closed else "stochastic-gradient ELBO ascent"
    unit = "sweeps" if closed else "steps"
    if info.get("interrupted_at_step") is not None:
        fit["converged"] = False
        return fit, (f"VI was interrupted after {info['interrupted_at_step']} {unit}: q is as it "
                     "was then, not fitted.")
    if fit["converged"] is None:
        return fit, "VI: the run did not record whether its fit converged."
    if fit["converged"] is False:
        return fit, (f"VI ({how}) did not converge in {length} {unit}: its ELBO was still "
                     "changing, so q and every interval from it may still move.")
    starts = fit["noise_starts"]
    return (fit, f"VI ({how}) converged in {length} {unit}." + _second_start(starts)
            + _null_start(starts))


def _second_start(starts: dict | None) -> str:
    """A sentence on the closed-form VI's second start of the noise level, where it ran."""
    if not starts or "residual" not in starts:
        return ""
    kept = "second" if starts["residual"] > starts["point"] else "first"
    if starts.get("null", -math.inf) > max(starts["residual"], starts["point"]):
        kept = "fit without a low-rank part"
    return (f" Its start fitted the data far more closely than the noise it found, so a second "
            f"fit started the noise level there: ELBO {starts['point']:.6g} from the first "
            f"start, {starts['residual']:.6g} from the second; the {kept} was kept.")


def _null_start(starts: dict | None) -> str:
    """A sentence on the closed-form VI's fit without a low-rank part, where it was kept."""
    if not starts or "null" not in starts:
        return ""
    best = max(value for name, value in starts.items() if name != "null")
    if starts["null"] <= best:
        return ""
    return (f" The fit from the start kept slices at an ELBO of {best:.6g}, below the "
            f"{starts['null']:.6g} of the fit without a low-rank part, which was kept: the VI "
            "finds no low-rank structure here.")


def _map_choice(choice: dict | None) -> str:
    """A sentence on what ``map_hold="auto"`` chose for the MAP (the fit itself, or the point
    the chains started at), where its validation fits ran."""
    if not choice or not choice.get("validation_mse"):
        return ""
    if choice.get("noise_start") == "residual":
        what = "the noise precision started at the start's residual"
    elif choice.get("chosen"):
        what = "the noise precision held at its start while the prior pruned"
    else:
        what = "the plain fit"
    errors = ", ".join(f"{label} {mse:.3g}" for label, mse in choice["validation_mse"].items())
    if choice.get("mean_mse") is not None:
        errors += f"; the mean of the fitted observations {choice['mean_mse']:.3g}"
    held = choice.get("validation", 0.1)
    text = (f"The MAP was chosen by fits to {1 - held:.0%} of the observations (map_hold "
            f"'auto'): {what} (mean squared error on the other {held:.0%}: {errors}; a "
            f"candidate must beat the plain fit by {choice.get('margin', 0.02):.0%}).")
    if worse_than_the_mean(choice):
        text += (" Every fit predicted those observations worse than their mean does: the "
                 "MAP fitted noise with slices the data do not support.")
    return text


def diagnostics_section(posterior, heldout: dict | None = None) -> dict:
    """ArviZ R-hat, bulk/tail ESS, trace and rank plots; for SVGD/VI/MAP, particle diversity.

    Warnings: a diverged run; a MAP run (its intervals are noise-only); for Markov chains, worst
    R-hat of the identified key variables
    (:func:`~bayestensor.results.convergence.key_variables`) above ``RHAT_MAX`` or their
    smallest bulk ESS below ``ESS_PER_CHAIN_MIN`` times the number of chains (the thresholds
    Vehtari et al. 2021 recommend and ArviZ documents for rank-normalized split R-hat).
    """
    warnings = []
    info = posterior.info
    start_note = _map_choice(info.get("map_hold_auto"))
    if info.get("diverged_at_step") is not None:
        warnings.append(f"The run diverged (NaN/inf) at step {info['diverged_at_step']} "
                        f"(chains {info.get('diverged_chains', '?')}); only the draws before it are kept.")
    if is_point_estimate(posterior):
        warnings.append(MAP_WARNING if posterior.model is not None else MAP_POINT_WARNING)
    if not posterior.is_markov_chain:
        numbers = {"method": posterior.method, "rhat": "not applicable", "ess": "not applicable"}
        text = [f"{posterior.method}: the draws are not a Markov chain, so R-hat and ESS are "
                "not applicable. The spread of the draws is shown instead."]
        if start_note:
            text.append(start_note)
            numbers["map_hold_auto"] = info["map_hold_auto"]
        figs = []
        if posterior.num_chains * posterior.num_draws > 1:
            div, figs = _diversity(posterior, heldout)
            numbers["diversity"] = div
            rows = [{"quantity": k, "value": v} for k, v in div.items()]
        else:
            rows = [{"quantity": "draws", "value": 1}]
        rows = [{"quantity": "R-hat", "value": "not applicable"}] + rows
        if posterior.method == "vi":
            fit, note = _vi_fit(info)
            numbers["vi_fit"] = fit
            rows = [{"quantity": f"VI {k}", "value": v} for k, v in fit.items()] + rows
            (warnings if fit["converged"] is False else text).append(note)
        if posterior.method == "svgd" and info.get("svgd_converged") is not None:
            numbers["svgd_converged"] = info["svgd_converged"]
            rows = [{"quantity": "SVGD settled", "value": info["svgd_converged"]}] + rows
            if info["svgd_converged"] is False:
                ratio = float(np.asarray(info.get("svgd_settled_ratio",
                                                  info["final_kernel_stats"]["stein_ratio"])))
                warnings.append(_SVGD_UNSETTLED.format(ratio))
        title = "Sampler diagnostics: particle diversity" if posterior.method == "svgd" else "Sampler diagnostics"
        return section("diagnostics", title, text=text, figures=figs, numbers=numbers,
                       warnings=warnings, tables=[("", rows, ["quantity", "value"])])
    key, data, check = check_identified(posterior, heldout)
    rows, max_rhat, min_bulk = check["variables"], check["max_rhat"], check["min_ess_bulk"]
    min_tail, ess_min = check["min_ess_tail"], check["ess_threshold"]
    numbers = {"method": posterior.method, "chains": posterior.num_chains, "draws": posterior.num_draws,
               "key_variables": rows, "max_rhat": max_rhat, "min_ess_bulk": min_bulk,
               "min_ess_tail": min_tail, "rhat_threshold": RHAT_MAX, "ess_threshold": ess_min}
    if posterior.num_chains < 2:
        warnings.append("Only one chain: R-hat cannot detect chains that disagree; run two or more.")
    entries = monitored_entries(posterior)
    failed = entries is not None and not entries["converged"]
    advice = convergence_advice(worst_rhat(max_rhat, entries), posterior.num_draws)
    on_entries = f"; {entries_words(entries)}" if failed else ""
    if math.isfinite(max_rhat) and max_rhat > RHAT_MAX:
        warnings.append(f"Chains have not converged: max R-hat {max_rhat:.3f} > {RHAT_MAX} "
                        f"(key variables){on_entries}: {advice}.")
    elif failed:
        warnings.append(f"Chains have not converged on the predicted entries: "
                        f"{entries_words(entries)}: {advice}.")
    if math.isfinite(min_bulk) and min_bulk < ess_min:
        warnings.append(f"Low effective sample size: min bulk ESS {min_bulk:.0f} < {ess_min} "
                        f"({ESS_PER_CHAIN_MIN} per chain). Intervals are noisy; draw more samples.")
    figs = []
    names = list(key)
    fig = None
    try:
        fig = arviz_adapter.plot_trace(data, var_names=names, figsize=(11, 2.2 * len(names)))
        figs.append(("trace.png", "Trace plots (ArviZ) of the key variables", png_bytes(fig)))
        rank_vars = _rank_plot_variables(key, posterior)
        fig = arviz_adapter.plot_rank(arviz_adapter.to_inference_data(rank_vars),
                                      figsize=(3.2 * len(rank_vars), 2.8))
        figs.append(("rank_plot.png", "Rank plots (ArviZ): uniform histograms mean mixed chains",
                     png_bytes(fig)))
    except Exception as err:  # an ArviZ plotting failure must not lose the report
        if fig is not None:
            close(fig)
        warnings.append(f"ArviZ plotting failed: {type(err).__name__}: {err}")
    checked = (f"identified key variables: the noise precision, the norm of the low-rank "
               f"tensor and {N_KEY_ENTRIES} predicted entries" if posterior.model is not None
               else "every site of the model")
    text = [f"{posterior.method}: {posterior.num_chains} chains of {posterior.num_draws} draws. "
            f"R-hat and ESS (ArviZ, rank-normalized split R-hat) of {checked}. Warning when "
            f"R-hat > {RHAT_MAX} or bulk ESS < {ESS_PER_CHAIN_MIN} per chain "
            "(the thresholds of Vehtari et al. 2021, Bayesian Analysis 16(2), used by ArviZ)."]
    if posterior.model is not None:
        text.append("Raw parameters are not checked: factors are identified only up to sign, "
                    "permutation and scale, and switched-off slices wander under the prior, so "
                    "their R-hat may be large even for good fits (Posterior.diagnostics('all') "
                    "lists them).")
    if start_note:
        text.append(start_note)
        numbers["map_hold_auto"] = info["map_hold_auto"]
    checks = info.get("convergence_checks")
    if checks:
        numbers["convergence_checks"] = checks
        text.append(_drawn_until_converged(checks, posterior.num_draws, info.get("max_samples")))
    summary = [{"quantity": "max R-hat", "value": max_rhat}, {"quantity": "min bulk ESS", "value": min_bulk},
               {"quantity": "min tail ESS", "value": min_tail}]
    if entries is not None:
        numbers["monitored_entries"] = entries
        noun = entries["noun"]
        summary += [{"quantity": f"max R-hat, monitored {noun}", "value": entries["max_rhat"]},
                    {"quantity": f"min bulk ESS, monitored {noun}",
                     "value": entries["min_ess_bulk"]}]
    return section("diagnostics", "Sampler diagnostics (ArviZ)", text=text, numbers=numbers,
                   warnings=warnings, figures=figs,
                   tables=[("", summary, ["quantity", "value"]),
                           ("per key variable", rows, ["var", "max_rhat", "min_ess_bulk", "min_ess_tail"])])


#: Most quantities in the rank plots.
RANK_PLOT_VARIABLES = 4


def _rank_plot_variables(key: dict, posterior) -> dict:
    """``{name: (chain, draw)}`` for the rank plots: a built-in model's noise precision,
    tensor norm and two predicted entries; a Pyro model's first scalars of its sites."""
    if posterior.model is None:
        scalars = {}
        for name, value in key.items():
            flat = value.reshape(value.shape[0], value.shape[1], -1)
            for j in range(min(flat.shape[-1], RANK_PLOT_VARIABLES - len(scalars))):
                scalars[name if flat.shape[-1] == 1 else f"{name}_{j}"] = flat[..., j]
        return scalars
    out = {"noise_precision": key.get("noise_precision"), "tensor_norm": key.get("tensor_norm")}
    if "entry" in key:
        for j in range(min(2, key["entry"].shape[-1])):
            out[f"entry_{j}"] = key["entry"][..., j]
    return {k: v for k, v in out.items() if v is not None}


def _drawn_until_converged(checks: list, draws: int, max_samples) -> str:
    """One sentence on SGHMC's draw-until-converged rule: where it checked and why it stopped."""
    at = ", ".join(f"{c['draws']:,}" for c in checks)
    last = checks[-1]
    stopped = last.get("stopped") if last["draws"] == draws else None
    if stopped == "converged":
        why = "the check passed"
    elif stopped == "apart":
        worst = max(last["max_rhat"], last.get("entries_max_rhat", -math.inf))
        why = (f"the chains were apart (R-hat above {RHAT_APART}, or none; {worst:.3f} at the "
               "last check) at two checks in a row")
    elif stopped == "max_samples":
        why = f"it reached max_samples ({max_samples:,})"
    elif stopped == "memory":
        why = (f"more draws would hold more than {MAX_KEPT_BYTES / 2 ** 30:g} GiB (these hold "
               f"{last['kept_bytes'] / 2 ** 30:.2f}; thin spans more steps in as much memory)")
    else:
        why = "the run ended before the next check (interrupted or diverged)"
    return (f"Drawn until converged (bayestensor.infer.stopping): checked at {at} draws per "
            f"chain; stopped at {draws:,} because {why}.")


# --- rank posterior -----------------------------------------------------------------------------
def rank_cap_warnings(found, posterior) -> list[str]:
    """Warnings for rank dimensions whose found rank equals the number of slices the model has.

    When the cap is ``max_rank``, the data may support more slices: increase ``max_rank``.
    When ``max_rank`` was lowered to what the tensor's shape supports, the rank is already full.
    """
    prior = posterior.model.low_rank_prior
    caps = list(prior.ranks) if prior is not None else None
    requested = list(prior.requested_ranks) if prior is not None else caps
    out = []
    for d, r in enumerate(found):
        if caps is None or int(r) < caps[d]:
            continue
        if caps[d] < requested[d]:
            out.append(f"Rank dimension {d}: the found rank {int(r)} is the largest the tensor's "
                       "shape supports (full rank); a low-rank model may not suit these data.")
        else:
            out.append(f"Rank dimension {d}: rank at max_rank ({int(r)} of {caps[d]}): increase "
                       "max_rank; the data may support more slices.")
    return out


def rank_section(posterior) -> dict | None:
    """Distribution of the effective rank per rank dimension, slice activity and slice scales.

    For a MAP run (one point) the rank found at that point is shown instead of a distribution.
    Warns when a rank dimension's found rank equals its cap (:func:`rank_cap_warnings`).
    """
    if posterior.model is None or not hasattr(posterior.model, "slice_scales"):
        return None
    rp = posterior.effective_rank()
    dims = rp.n_rank_dims
    caps = [int(rp.scales[d].shape[-1]) for d in range(dims)]
    rule = (f"A slice is active when its scale exceeds {rp.threshold} times the largest slice "
            "scale of its rank dimension; the effective rank counts active slices.")
    floor = {}
    if rp.signal is not None:
        floor = {"below_floor": float((rp.signal <= rp.threshold).mean())}
        rule += (f" A draw whose low-rank part has a root mean square at most {rp.threshold} "
                 f"times the data's sd has rank 0 (nothing beyond the offset or intercept); "
                 f"{floor['below_floor']:.0%} of the draws here.")
    if is_point_estimate(posterior):
        found = rp.mode().tolist()
        numbers = {"threshold": rp.threshold, "point_estimate": True, "found_rank": found,
                   "slices": caps, **floor}
        rows = [{"rank dim": d, "found rank": found[d], "slices (max rank)": caps[d]}
                for d in range(dims)]
        text = [f"{posterior.method}: one point estimate, so there is no rank posterior; the "
                "rank found at that point is shown. " + rule]
        return section("rank", "Rank found (point estimate)", text=text, numbers=numbers,
                       warnings=rank_cap_warnings(found, posterior),
                       tables=[("", rows, ["rank dim", "found rank", "slices (max rank)"])])
    numbers = {"threshold": rp.threshold, "mode": rp.mode().tolist(), "mean": rp.mean().tolist(),
               "slices": caps,
               "distribution": [{str(k): v for k, v in rp.distribution(d).items()} for d in range(dims)],
               "activity": [rp.activity(d).tolist() for d in range(dims)], **floor}
    rows = [{"rank dim": d, "mode": int(rp.mode()[d]), "mean": float(rp.mean()[d]),
             "slices (max rank)": caps[d],
             "distribution": ", ".join(f"{k}: {v:.2f}" for k, v in rp.distribution(d).items())}
            for d in range(dims)]
    return section("rank", "Rank posterior", text=[rule + " Shown per draw."], numbers=numbers,
                   warnings=rank_cap_warnings(rp.mode().tolist(), posterior),
                   tables=[("", rows, ["rank dim", "mode", "mean", "slices (max rank)",
                                       "distribution"])],
                   figures=[("rank.png", "Effective-rank distribution and relative slice scales",
                             png_bytes(figures.rank_figure(rp)))])


# --- calibration and predictions ---------------------------------------------------------------
def _is_classifier(posterior) -> bool:
    return getattr(posterior.model, "likelihood", "gaussian") == "bernoulli"


def _heldout_inputs(heldout):
    return heldout["indices"] if "indices" in heldout else heldout["inputs"]


def truth_is_noise_free(heldout: dict) -> bool:
    """Whether ``heldout["truth"]`` holds noise-free values (a synthetic run) rather than data.

    ``heldout.npz`` carries ``noisy`` beside ``truth`` only when the noise-free values are
    known; a ``noisy`` equal to ``truth`` (the observations written twice) is data.
    """
    if "noisy" not in heldout:
        return False
    return not np.array_equal(np.asarray(heldout["noisy"]), np.asarray(heldout["truth"]))


def truth_label(heldout: dict) -> str:
    """What ``heldout["truth"]`` is, in words."""
    return "noise-free values" if truth_is_noise_free(heldout) else "held-out observations (with noise)"


def _noise_only_note(posterior) -> list[str]:
    if not is_point_estimate(posterior):
        return []
    return [f"{posterior.method}: a single point estimate with no parameter uncertainty, so "
            "these intervals are noise-only: they show the spread of a new noisy observation "
            "around the point, not uncertainty about the entry."]


def heldout_prediction(posterior, heldout: dict | None):
    """The posterior's prediction at the held-out points (None without them or a model)."""
    if heldout is None or posterior.model is None or not hasattr(posterior.model, "predict_entries"):
        return None
    return posterior.predict(_heldout_inputs(heldout))


def calibration_section(posterior, heldout: dict | None, levels=LEVELS, pred=None) -> dict | None:
    """Empirical vs nominal coverage of held-out credible intervals and their PIT histogram;
    for classifiers, reliability and ECE.

    Without held-out data the section says how to get it. ``pred`` is the held-out
    prediction when the caller made it already (:func:`heldout_prediction`).
    """
    if posterior.model is None or not hasattr(posterior.model, "predict_entries"):
        return None
    if heldout is None:
        return section("calibration", "Calibration", numbers={"heldout": None}, text=[
            "Not measured: the run has no held-out data. Hold out part of the observed entries "
            "(bayestensor complete --holdout 0.1) or give X_test and y_test (bayestensor "
            "regress) to compare the intervals with data the fit did not see."])
    pred = pred if pred is not None else heldout_prediction(posterior, heldout)
    if _is_classifier(posterior):
        rel = binary_reliability(pred.mean, heldout["truth"])
        fig = reliability_figure({posterior.method: rel})
        return section("calibration", "Calibration", numbers={"reliability": rel, "ece": rel["ece"]},
                       text=[f"Expected calibration error ({BINARY_BINS} bins): {rel['ece']:.4f}; "
                             f"held-out accuracy {fmt(rel['accuracy_overall'])}."],
                       figures=[("reliability.png", "Reliability diagram (bars: points per bin)",
                                 png_bytes(fig))])
    target = heldout["noisy"] if "noisy" in heldout else heldout["truth"]
    what = "noisy held-out observations"
    pit = pred.pit(target)
    cov = coverage_from_pit(pit, levels)
    fig, (left, right) = subplots(1, 2, figsize=(9.0, 3.8))
    coverage_figure(levels, cov, posterior.method, ax=left)
    plot_pit_histogram(pit, title="PIT of held-out observations", ax=right)
    rows = [{"nominal": lv, "empirical": c} for lv, c in zip(levels, cov)]
    noise_only = is_point_estimate(posterior)
    counts = np.histogram(pit, bins=PIT_BINS, range=(0.0, 1.0))[0]
    return section("calibration", "Calibration", numbers={"levels": list(levels), "coverage": cov,
                                                          "target": what, "n": int(len(target)),
                                                          "noise_only_intervals": noise_only,
                                                          "pit_counts": counts.tolist()},
                   text=[f"Share of the {len(target)} {what} inside the central predictive "
                         "interval, and their PIT (the predictive CDF at each observation): "
                         "uniform when calibrated, U-shaped when the intervals are too narrow, "
                         "humped when too wide."] + _noise_only_note(posterior),
                   tables=[("coverage", rows, ["nominal", "empirical"])],
                   figures=[("calibration.png", "Empirical vs nominal coverage; PIT histogram "
                             "with the band of a uniform PIT", png_bytes(fig))])


def predictions_section(posterior, heldout: dict | None = None, image: dict | None = None,
                        level: float = 0.9, pred=None) -> dict | None:
    """Held-out error, predictions with intervals, and for images the mean and uncertainty map.

    ``pred`` is the held-out prediction when the caller made it already.
    """
    if posterior.model is None or not hasattr(posterior.model, "predict_entries"):
        return None
    numbers, figs, text, tables = {}, [], [], []
    if heldout is not None:
        pred = pred if pred is not None else heldout_prediction(posterior, heldout)
        truth = np.asarray(heldout["truth"], dtype=float)
        if _is_classifier(posterior):
            acc = float(np.mean((pred.mean > 0.5) == (truth > 0.5)))
            p = np.clip(pred.mean, 1e-12, 1 - 1e-12)
            nll = float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))
            numbers.update(heldout_accuracy=acc, heldout_nll=nll, n=int(len(truth)))
            tables.append(("held-out", [{"quantity": "accuracy", "value": acc},
                                        {"quantity": "NLL", "value": nll}], ["quantity", "value"]))
        else:
            lo, hi = pred.interval(level)
            rel = float(np.linalg.norm(pred.mean - truth) / (np.linalg.norm(truth) or 1.0))
            numbers.update(heldout_relative_error=rel,
                           heldout_rmse=float(np.sqrt(np.mean((pred.mean - truth) ** 2))),
                           mean_interval_width=float(np.mean(hi - lo)), level=level, n=int(len(truth)))
            if "noisy" in heldout:
                numbers["heldout_rmse_noisy"] = float(np.sqrt(np.mean((pred.mean - heldout["noisy"]) ** 2)))
            tables.append(("held-out", [{"quantity": k, "value": v} for k, v in numbers.items()],
                           ["quantity", "value"]))
            numbers["truth"] = truth_label(heldout)
            text.append("Relative error = ||mean - truth|| / ||truth|| over the held-out points "
                        f"(truth: {truth_label(heldout)}).")
            text += _noise_only_note(posterior)
            k = min(N_SHOWN_POINTS, len(truth))
            fig = figures.interval_figure(pred.mean[:k], lo[:k], hi[:k], truth[:k], level)
            figs.append(("predictions.png",
                         f"First {k} held-out points with {level:.0%} predictive intervals",
                         png_bytes(fig)))
    if image is not None and is_image(np.shape(image["observed"])):
        shape = np.shape(image["observed"])
        dense = posterior.predict(np.indices(shape).reshape(len(shape), -1).T)
        mean, sd = dense.mean.reshape(shape), dense.sd_mean.reshape(shape)
        with tempfile.TemporaryDirectory() as tmp:
            paths = image_completion_figures(image["observed"], mean, sd, tmp, truth=image.get("truth"))
            figs.append(("image_panel.png", "Image: posterior mean and the posterior sd of each "
                         "pixel's noise-free value (missing pixels hatched in the observed panel)",
                         Path(paths["panel"]).read_bytes()))
        numbers["image_entry_sd_mean"] = float(np.mean(sd))
        numbers["image_noise_sd"] = float(dense.noise_sd.double().mean())
        if image.get("truth") is not None:
            miss = np.isnan(image["observed"])
            t = image["truth"]
            numbers["image_missing_relative_error"] = float(
                np.linalg.norm((mean - t)[miss]) / (np.linalg.norm(t[miss]) or 1.0))
    elif image is not None and is_band_cube(np.shape(image["observed"])):
        # An (H, W, bands) cube that is not RGB: a few bands as images; only they are predicted.
        cube = np.asarray(image["observed"])
        bands = default_bands(cube.shape[-1])
        idx = np.indices(cube.shape[:2] + (len(bands),)).reshape(3, -1).T
        idx[:, 2] = np.asarray(bands)[idx[:, 2]]
        shown = posterior.predict(idx)
        shape = cube.shape[:2] + (len(bands),)
        with tempfile.TemporaryDirectory() as tmp:
            paths = band_figures(cube[..., bands], shown.mean.reshape(shape),
                                 shown.sd_mean.reshape(shape), tmp, labels=bands)
            figs.append(("bands_panel.png", f"Bands {bands}: observed (missing hatched), "
                         "posterior mean, and the posterior sd of each entry's noise-free value",
                         Path(paths["panel"]).read_bytes()))
        numbers["bands_shown"] = bands
        numbers["bands_entry_sd_mean"] = float(np.mean(shown.sd_mean))
    unobserved = _unobserved_note(posterior)
    if unobserved is not None:
        numbers["unobserved_indices"], note = unobserved
        text.append(note)
    if not numbers and not figs:
        return None
    return section("predictions", "Predictions", text=text, tables=tables, figures=figs, numbers=numbers)


#: Unobserved indices listed per mode in the report; more are counted only.
LISTED_INDICES = 10


def _unobserved_note(posterior) -> tuple[dict, str] | None:
    """``({"mode": count}, words)`` for a completion whose data leave indices of some mode
    unobserved (a user or an item with no data), else ``None``: every entry at such an index
    has only the prior to go on, and its interval says so by its width."""
    unobserved = getattr(posterior.model, "unobserved_indices", None)
    if unobserved is None or not posterior.model.has_data:
        return None
    per_mode = {mode: rows.tolist() for mode, rows in enumerate(unobserved()) if len(rows)}
    if not per_mode:
        return None
    shape = posterior.model.shape
    listed = "; ".join(
        f"mode {mode}: {len(rows):,} of {shape[mode]:,} ("
        + ", ".join(map(str, rows[:LISTED_INDICES])) + (", ..." if len(rows) > LISTED_INDICES
                                                        else "") + ")"
        for mode, rows in per_mode.items())
    return ({str(mode): len(rows) for mode, rows in per_mode.items()},
            f"Indices with no observed entry: {listed}. Every entry at such an index is "
            "predicted from the prior of its parameters alone (given the other modes), not "
            "from data about that index: its mean is the fitted offset (the prior's mean of "
            "the low-rank part is zero) and its interval spans what the prior allows (under "
            "the MAP, which sets those parameters to zero, the noise alone).")


# --- compressed networks -------------------------------------------------------------------------
def weights_section(posterior) -> dict | None:
    """Tensor regression: posterior mean and sd of the coefficient tensor W (images when 2-D)."""
    model = getattr(posterior, "model", None)
    if model is None or not hasattr(model, "weight_posterior"):
        return None
    mean, sd = model.weight_posterior(posterior)
    numbers = {"weight_shape": list(mean.shape), "mean_abs": float(np.abs(mean).mean()),
               "sd_mean": float(np.asarray(sd).mean()),
               "relative_sd": float(np.linalg.norm(sd) / max(np.linalg.norm(mean), 1e-300))}
    shown = []
    if mean.ndim == 2:
        fig = plot_weights(mean, sd)
        shown.append(("weights.png", "Posterior mean and sd of W", png_bytes(fig)))
    text = [f"Coefficient tensor W of shape {tuple(mean.shape)}; relative posterior sd "
            f"||sd|| / ||mean|| = {numbers['relative_sd']:.3g}."]
    return section("weights", "Regression coefficients", text=text, figures=shown,
                   numbers=numbers)


def network_section(net: dict) -> dict:
    """Ranks per layer, compression ratios, accuracy/NLL/ECE vs dense, reliability, shift."""
    layers = net.get("layers", [])
    cols = ["name", "format", "in_shape", "out_shape", "ranks_before", "ranks_after", "dense_params",
            "compressed_params", "ratio"]
    metrics = net.get("metrics", {})
    mrows = [{"model": name, **vals} for name, vals in metrics.items()]
    mcols = ["model"] + sorted({k for v in metrics.values() for k in v})
    numbers = {k: net[k] for k in ("layers", "linear_ratio", "model_ratio", "metrics", "reliability",
                                   "shift", "train_seconds") if k in net}
    figs = []
    if layers:
        figs.append(("network_ratios.png", "Compression ratio per layer",
                     png_bytes(figures.ratios_figure(layers))))
    if metrics:
        keys = [k for k in ("accuracy", "nll", "ece") if any(k in v for v in metrics.values())]
        figs.append(("network_metrics.png", "Accuracy, NLL and ECE: compressed vs dense",
                     png_bytes(figures.metrics_figure(metrics, keys))))
    if net.get("reliability"):
        figs.append(("network_reliability.png", "Reliability diagrams (bars: points per bin)",
                     png_bytes(reliability_figure(net["reliability"]))))
    tables = [("layers", [{c: lay.get(c) for c in cols} for lay in layers], cols),
              ("compression", [{"quantity": "linear layers ratio", "value": net.get("linear_ratio")},
                               {"quantity": "whole model ratio", "value": net.get("model_ratio")}],
               ["quantity", "value"]),
              ("metrics", mrows, mcols)]
    shift = net.get("shift") or {}
    srows = [{"model": k, **v} for k, v in shift.items() if isinstance(v, dict)]
    if srows:
        tables.append((f"distribution shift: {shift.get('description', '')}", srows,
                       ["model", "entropy_in", "entropy_shifted", "accuracy_shifted"]))
    if net.get("train_seconds"):
        tables.append(("training time (s)", [{"model": k, "seconds": v} for k, v in net["train_seconds"].items()],
                       ["model", "seconds"]))
    return section("network", "Compressed network", tables=tables, figures=figs, numbers=numbers,
                   warnings=net.get("warnings", []))


# --- dynamics studies ---------------------------------------------------------------------------
def _comparisons(obj, path=()):
    """Every ``ComparisonResult.to_dict()`` inside a dynamics ``results.json``."""
    if isinstance(obj, dict):
        if {"final", "success_summary", "bands", "trajectories"} <= set(obj):
            yield "/".join(path) or "study", obj
            return
        for k, v in obj.items():
            yield from _comparisons(v, path + (str(k),))


def dynamics_section(results: dict, max_metrics: int = 3) -> dict | None:
    """Trajectory bands across replicates, final-metric distributions, success probabilities."""
    comps = list(_comparisons(results))
    if not comps:
        return None
    numbers, figs, tables = {}, [], []
    for label, comp in comps:
        learners = list(comp["final"])
        metrics = list(comp["bands"]["metrics"])
        metrics = (["error"] if "error" in metrics else []) + [m for m in metrics if m != "error"]
        metrics = metrics[:max_metrics]
        slug = label.replace("/", "_").replace(" ", "_").replace("=", "")
        if metrics:
            title = f"{label}: median and {comp['bands']['level']:.0%} band over seeds"
            figs.append((f"dyn_{slug}_bands.png", f"{label}: metric trajectories with bands",
                         png_bytes(figures.bands_figure(comp, metrics, title))))
        fmetric = "error" if all("error" in comp["final"][lrn] for lrn in learners) else None
        if fmetric is None and learners and comp["final"][learners[0]]:
            fmetric = next(iter(comp["final"][learners[0]]))
        figs.append((f"dyn_{slug}_final.png", f"{label}: final-metric distribution and success",
                     png_bytes(figures.final_figure(comp, fmetric))))
        succ = comp["success_summary"]
        summary = [r for r in comp["summary"] if fmetric is None or r["metric"] == fmetric]
        numbers[label] = {"learners": learners, "seeds": comp.get("seeds"),
                          "success_rule": comp.get("success_rule"), "summary": comp["summary"],
                          "success": succ, "final_metric_shown": fmetric}
        tables.append((f"{label}: success ({comp.get('success_rule', '')})", succ,
                       ["learner", "successes", "n", "p", "ci_low", "ci_high"]))
        tables.append((f"{label}: final {fmetric} (mean with the interval ci_method names)",
                       summary, ["learner", "n", "mean", "median", "sd", "ci_low", "ci_high",
                                 "ci_method"]))
    return section("dynamics", "Learning-dynamics study", tables=tables, figures=figs, numbers=numbers,
                   text=[f"{len(comps)} comparison(s): replicates over seeds; bands are pointwise "
                         "quantiles over seeds, success intervals are binomial."])
