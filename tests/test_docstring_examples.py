"""Every ``Examples`` section in the package's docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import bayestensor

PACKAGE_DIR = Path(bayestensor.__file__).parent


def modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="bayestensor."):
        path = PACKAGE_DIR.joinpath(*info.name.split(".")[1:])
        source = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
        if source.exists() and ">>> " in source.read_text():
            names.append(info.name)
    return names


def test_the_package_has_examples():
    assert len(modules_with_examples()) >= 15


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed, attempted = doctest.testmod(module, optionflags=flags, report=True, verbose=False)
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} examples in {name} failed (printed above)"
