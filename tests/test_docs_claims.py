"""What the README and the docs say about the command line, checked against the command.

* The commands the README, ``docs/index.md`` and ``docs/cli.md`` list are the commands of the
  ``bayestensor`` group (and the ``dynamics`` studies those of its sub-group).
* The files ``docs/cli.md`` promises under "Written to ..." for a command are exactly the files
  a small run of that command writes (each promised name or pattern is written, and nothing
  else is).
* The README's quickstart commands are Makefile targets that do what the README says.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from bayestensor.cli import main

pytestmark = pytest.mark.filterwarnings(  # the runs are deliberately tiny
    "ignore::bayestensor.infer.baselines.NotConvergedWarning")

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = ROOT / "docs" / "cli.md"
#: A file or folder name in backticks: ``name.ext`` (``*`` allowed), ``.marker`` or ``folder/``.
FILE_NAME = re.compile(r"^(\.[\w-]+|[\w*-]+\.(pt|npz|npy|json|md|html|png|csv)|[\w-]+/)$")


# --- parsing the pages ------------------------------------------------------------------------
def paragraph_with(text: str, marker: str) -> str:
    """The paragraph (or list item, with its continuation lines) that contains ``marker``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    end = start + 1
    while end < len(lines) and lines[end].startswith("  ") and lines[end].strip():
        end += 1
    return " ".join(lines[start:end])


def listed_commands(paragraph: str) -> tuple[set[str], set[str]]:
    """Commands and ``dynamics`` studies named in backticks, as ``bayestensor demo``, ``complete``
    or ``dynamics fa-vs-gd | overparam | ...``."""
    commands, studies = set(), set()
    for token in re.findall(r"`([^`]+)`", paragraph):
        words = token.replace("\\|", "|").removeprefix("bayestensor ").split()
        commands.add(words[0])
        if words[0] == "dynamics":
            studies |= {w for w in words[1:] if w != "|"}
    return commands, studies


def cli_table_commands() -> tuple[set[str], set[str]]:
    """Commands in the first column of the table at the top of ``docs/cli.md``."""
    rows = [line for line in CLI_PAGE.read_text().splitlines()
            if line.startswith("| `bayestensor ")]
    return listed_commands(" ".join(row.split("` |")[0] + "`" for row in rows))


def group_commands() -> tuple[set[str], set[str]]:
    ctx = click.Context(main)
    dynamics = main.get_command(ctx, "dynamics")
    return set(main.list_commands(ctx)), set(dynamics.list_commands(click.Context(dynamics)))


def section(title: str) -> str:
    """The text of the ``## title`` section of ``docs/cli.md``."""
    parts = re.split(r"^## ", CLI_PAGE.read_text(), flags=re.M)
    return next(p for p in parts if p.startswith(title + "\n"))


def promised_files(title: str) -> set[str]:
    """File names in the list that follows "Written to" in a section of ``docs/cli.md``."""
    lines = section(title).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Written to "))
    items = []
    for line in lines[start + 1:]:
        if line.startswith("- "):
            items.append(line)
        elif line.startswith("  ") and items:
            items[-1] += " " + line
        elif items:
            break
    names = {t for item in items for t in re.findall(r"`([^`]+)`", item) if FILE_NAME.match(t)}
    assert names, f"no files listed under 'Written to' in {title!r}"
    return names


SHARED = "Shared options and run folders"


def written(folder: Path) -> set[str]:
    return {p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()}


def assert_files_match(folder: Path, promised: set[str]) -> None:
    """Every file written is promised, and every promise is written."""
    names = written(folder)
    unpromised = {n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in promised)}
    unkept = {p for p in promised if not any(fnmatch.fnmatchcase(n, p) for n in names)}
    assert not unpromised, f"written but not in docs/cli.md: {sorted(unpromised)}"
    assert not unkept, f"in docs/cli.md but not written: {sorted(unkept)}"


def run(args) -> None:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output


# --- commands listed --------------------------------------------------------------------------
@pytest.mark.parametrize("page, marker", [("README.md", "**Command line**"),
                                          ("docs/index.md", "[Command line](cli.md)")])
def test_pages_list_the_commands(page, marker):
    paragraph = paragraph_with((ROOT / page).read_text(), marker)
    assert listed_commands(paragraph) == group_commands()


def test_cli_page_table_lists_the_commands():
    assert cli_table_commands() == group_commands()
    commands, _ = group_commands()
    for command in commands:  # and each has its section
        assert section(f"`bayestensor {command}`")


# --- files written ----------------------------------------------------------------------------
def test_parser_reads_a_files_list():
    """The parser itself: names, patterns and folders in backticks; options and fields not."""
    assert promised_files("`bayestensor report`") == {"report.html", "report.md", "report.json",
                                                       "report_files/"}
    assert {"run.json", ".bayestensor-run"} <= promised_files(SHARED)


#: A tiny SVGD fit with the fewest draws ``compare`` runs PSIS-LOO on (``MIN_LOO_DRAWS``).
SVGD = ["--method", "svgd", "--num-samples", "25", "--steps", "10"]


def test_complete_writes_the_files_listed(tmp_path):
    """An (H, W, 3) image with --holdout and the report: every conditional file applies."""
    rng = np.random.default_rng(0)
    image = rng.random((8, 8, 3))
    image[rng.random(image.shape) < 0.3] = np.nan
    np.save(tmp_path / "image.npy", image)
    out = tmp_path / "out"
    run(["complete", tmp_path / "image.npy", "--max-rank", "2", *SVGD, "--holdout",
         "0.2", "--map-hold", "none", "--quiet", "--out", out])
    assert_files_match(out, promised_files(SHARED) | promised_files("`bayestensor complete`"))

    # `report` into another folder writes the report files alone.
    again = tmp_path / "again"
    run(["report", out, "--out", again])
    assert_files_match(again, promised_files("`bayestensor report`"))

    # `compare` of two runs of the same data writes its own files, nothing of a run folder.
    other = tmp_path / "other"
    run(["complete", tmp_path / "image.npy", "--max-rank", "1", *SVGD, "--holdout",
         "0.2", "--map-hold", "none", "--no-figures", "--no-report", "--quiet", "--out", other])
    compared = tmp_path / "compared"
    run(["compare", out, other, "--out", compared])
    assert_files_match(compared, promised_files("`bayestensor compare`"))


def test_demo_writes_the_files_listed(tmp_path, monkeypatch):
    """The demo's own code path on a small tensor (its 30 x 30 x 30 default takes minutes)."""
    monkeypatch.setattr("bayestensor.cli.complete.DEMO_SHAPE", (8, 7, 6))
    monkeypatch.setattr("bayestensor.cli.complete.DEMO_MAX_RANK", {"cp": 3})
    monkeypatch.setattr("bayestensor.cli.complete.DEMO_RANK", {"cp": 2})
    out = tmp_path / "demo"
    run(["demo", "--method", "map", "--quiet", "--out", out])
    assert_files_match(out, promised_files(SHARED) | promised_files("`bayestensor demo`"))


@pytest.mark.slow  # a regression, a network and three dynamics studies: ~25 s on 2 cores
@pytest.mark.parametrize("command", ["regress", "compress", "dynamics"])
def test_other_commands_write_the_files_listed(command, tmp_path):
    out = tmp_path / "out"
    if command == "regress":
        rng = np.random.default_rng(0)
        X = rng.normal(size=(30, 4, 4))
        y = X[:, 0, 0] + 0.1 * rng.normal(size=30)
        np.savez(tmp_path / "reg.npz", X=X, y=y, X_test=X[:5], y_test=y[:5])
        run(["regress", tmp_path / "reg.npz", "--method", "map", "--steps", "20",
             "--max-rank", "2", "--quiet", "--out", out])
        assert_files_match(out, promised_files(SHARED) | promised_files("`bayestensor regress`"))
    elif command == "compress":
        run(["compress", "digits", "--epochs", "1", "--hidden", "32", "--max-rank", "2",
             "--quiet", "--out", out])
        assert_files_match(out, promised_files(SHARED) | promised_files("`bayestensor compress`"))
    else:
        studies = {"fa-vs-gd": ["--seeds", "2", "--n", "6", "--m", "5", "--rank", "2",
                                "--r-low", "1", "--r-high", "3", "--steps", "20", "--no-bayes"],
                   "overparam": ["--seeds", "2", "--d", "4", "--r", "1", "--m-multiples", "1",
                                 "--alphas", "0.1", "--steps", "20"],
                   "diagonal": ["--seeds", "2", "--n", "5", "--d", "6", "--k", "1",
                                "--alphas", "0.1", "--steps", "20"]}
        for study, args in studies.items():
            run(["dynamics", study, *args, "--quiet", "--out", out / study])
            assert_files_match(out / study, promised_files(SHARED)
                               | promised_files("`bayestensor dynamics`"))


# --- the README's quickstart ------------------------------------------------------------------
def makefile_recipe(target: str) -> str:
    """The recipe lines of a Makefile target."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, flags=re.M)
    assert match, f"no Makefile target {target!r}"
    return match.group(1)


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_quickstart_commands_are_make_targets(page):
    block = re.search(r"```bash\n(make demo[^\n]*\nmake test[^\n]*)\n```",
                      (ROOT / page).read_text())
    assert block, f"{page}: the quickstart block is no longer `make demo` / `make test`"
    assert "$(BIN)/bayestensor demo" in makefile_recipe("demo")
    assert "-m pytest" in makefile_recipe("test")
    assert "slow" not in makefile_recipe("test")  # the whole suite, slow tests included
