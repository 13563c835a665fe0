"""Registry: registration, lookup, duplicate names and helpful unknown-name errors."""

from __future__ import annotations

import pytest

from torchslim import data, models
from torchslim.core.errors import TorchSlimError, UnknownNameError
from torchslim.core.registry import Registry, closest


@pytest.fixture
def reg() -> Registry:
    r: Registry = Registry("widget")
    r.register("alpha", 1)
    r.register("beta", 2)
    return r


def test_register_get_list(reg):
    reg.register("gamma", 3)
    assert reg.get("alpha") == 1 and reg.get("gamma") == 3
    assert reg.list() == ["alpha", "beta", "gamma"]
    assert list(reg) == ["alpha", "beta", "gamma"]
    assert len(reg) == 3
    assert "beta" in reg and "delta" not in reg


def test_list_is_sorted_and_a_copy(reg):
    reg.register("aardvark", 0)
    names = reg.list()
    assert names == sorted(names) and names[0] == "aardvark"
    names.append("intruder")
    assert "intruder" not in reg


def test_decorator_registers_and_returns_the_object(reg):
    @reg.register("double")
    def double(x):
        return 2 * x

    assert reg.get("double") is double
    assert double(4) == 8  # the decorator hands back the function itself


def test_duplicate_name_is_an_error_naming_it(reg):
    with pytest.raises(TorchSlimError, match="'alpha'.*already registered"):
        reg.register("alpha", 99)
    with pytest.raises(TorchSlimError, match="'beta'"):
        reg.register("beta")(lambda: None)
    assert reg.get("alpha") == 1  # the first registration survives


@pytest.mark.parametrize("bad", ["", None, 3])
def test_name_must_be_a_non_empty_string(reg, bad):
    with pytest.raises(TorchSlimError, match="non-empty string"):
        reg.register(bad, 1)


def test_unknown_name_lists_every_valid_name(reg):
    with pytest.raises(UnknownNameError) as info:
        reg.get("alpah")
    message = str(info.value)
    assert "Unknown widget 'alpah'" in message
    assert "Did you mean 'alpha'?" in message
    assert "Valid widget names: alpha, beta." in message
    assert not message.startswith('"')  # not KeyError's quoted repr


def test_unknown_name_is_a_key_error_and_a_torchslim_error(reg):
    with pytest.raises(KeyError):
        reg.get("nope")
    with pytest.raises(TorchSlimError):
        reg.get("nope")


def test_unknown_name_without_a_close_match_has_no_hint(reg):
    with pytest.raises(UnknownNameError) as info:
        reg.get("zzzzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "alpha, beta" in str(info.value)


def test_unhashable_name_is_an_unknown_name(reg):
    with pytest.raises(UnknownNameError, match="Valid widget names"):
        reg.get(["alpha"])


def test_empty_registry_says_so():
    with pytest.raises(UnknownNameError, match=r"\(none registered\)"):
        Registry("thing").get("x")


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("resnet2O", "resnet20"),  # letter O for zero
        ("resnett20", "resnet20"),
        ("RESNET20", "resnet20"),
        ("resnet-56", "resnet56"),
        ("cnn_small", "cnn-small"),
        ("cnn-tiney", "cnn-tiny"),
        ("mpl", "mlp"),
    ],
)
def test_closest_model_name(typo, meant):
    assert closest(typo, models.list()) == meant


def test_closest_is_none_when_nothing_is_similar():
    assert closest("transformer-xl", ["mlp", "cnn"]) is None


@pytest.mark.parametrize(("typo", "meant"), [("resnett20", "resnet20"), ("resnet2O", "resnet20")])
def test_models_create_unknown_name(typo, meant):
    with pytest.raises(UnknownNameError) as info:
        models.create(typo)
    message = str(info.value)
    assert f"Did you mean {meant!r}?" in message
    for name in models.list():
        assert name in message


@pytest.mark.parametrize("typo", ["fashion-mnst", "Fashion_MNIST", "fashionmnist"])
def test_data_load_unknown_name(typo):
    with pytest.raises(UnknownNameError) as info:
        data.load(typo)
    message = str(info.value)
    assert "Did you mean 'fashion-mnist'?" in message
    for name in data.list():
        assert name in message


def test_builtin_registries_hold_the_expected_entries():
    assert {"fashion-mnist", "synthetic"} <= set(data.list())
    assert {"cnn-tiny", "cnn-small", "cnn-medium", "mlp", "resnet8", "resnet20", "resnet56"} <= set(
        models.list()
    )
