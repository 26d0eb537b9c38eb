"""The public API has numpydoc docstrings.

"Public" is what the package exports: ``bayestensor.__all__`` and each sub-package's
``__all__``, with the public methods and properties those classes define. Everything there has a
docstring; a function, method or class that takes two or more arguments documents them in a
numpydoc ``Parameters`` (or, for a data class, ``Attributes``) section.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import bayestensor

SKIPPED_ARGS = {"self", "cls", "args", "kwargs", "ctx"}


def exported_objects():
    names = ["bayestensor"] + [f"bayestensor.{m.name}" for m in
                               pkgutil.iter_modules(bayestensor.__path__)]
    seen = {}
    for module_name in names:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", None) or []:
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) \
                    and obj.__module__.startswith("bayestensor") and id(obj) not in seen:
                seen[id(obj)] = (f"{module_name}.{name}", obj)
    return list(seen.values())


def own_members(cls):
    """Public methods and properties that ``cls`` defines or overrides: ``(name, member,
    docstring)``, the docstring inherited from a base class where the override has none (as
    ``help`` and numpydoc show it)."""
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            yield name, member, docstring_in_mro(cls, name)


def docstring_in_mro(cls, name) -> str:
    for base in cls.__mro__:
        member = vars(base).get(name)
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if isinstance(member, property):
            member = member.fget
        doc = getattr(member, "__doc__", None)
        if doc and doc.strip():
            return inspect.cleandoc(doc)
    return ""


def argument_count(func) -> int:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return 0
    return len([p for p in params if p not in SKIPPED_ARGS])


def problems_of(label, obj, sections=("Parameters",), doc=None):
    doc = inspect.getdoc(obj) or "" if doc is None else doc
    if not doc.strip():
        return [f"{label}: no docstring"]
    if isinstance(obj, property) or argument_count(obj) < 2:
        return []
    if not any(f"{s}\n{'-' * len(s)}" in doc for s in sections):
        return [f"{label}: {argument_count(obj)} arguments, no {' / '.join(sections)} section"]
    return []


def test_the_public_api_is_found():
    labels = {label for label, _ in exported_objects()}
    assert {"bayestensor.fit", "bayestensor.TensorCompletion", "bayestensor.Posterior",
            "bayestensor.nets.tensorize", "bayestensor.report.report"} <= labels
    assert len(labels) > 100


def test_every_public_function_class_and_method_has_a_numpydoc_docstring():
    problems = []
    for label, obj in exported_objects():
        if inspect.isclass(obj):
            problems += problems_of(label, obj, ("Parameters", "Attributes"))
            for name, member, doc in own_members(obj):
                problems += problems_of(f"{label}.{name}", member, doc=doc)
        else:
            problems += problems_of(label, obj)
    assert problems == [], "\n".join(problems)
