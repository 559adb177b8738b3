"""Every public name of the packages that import on first use resolves, and nothing else."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["conddsl", "conddsl.history", "conddsl.runtime"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_and_an_unknown_one_is_an_attribute_error(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
        assert name in vars(module)  # kept: the next lookup does not import again
    with pytest.raises(AttributeError, match=f"module {package!r} has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_a_submodule_named_in_the_map_is_the_module_itself():
    import conddsl

    assert conddsl.conds is importlib.import_module("conddsl.conds")
