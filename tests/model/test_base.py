"""The registry of model kinds (:mod:`aerec.model.base`): lookup, registration, which kind a
training configuration describes, and rebuilding a checkpoint's model from its architecture.

Guards against: an unknown kind answered with a bare ``KeyError`` that names nothing; a second
class silently replacing a registered kind; ``kind_of`` picking a low-priority claim (a
``members`` list read as an autoencoder, an item-based network as a user-based one); an old
published-network checkpoint (its architecture has no ``kind``) that no longer loads; a family
configuration class listed twice (its fields would be declared twice in ``TrainConfig``); a new
kind that needs an edit anywhere but its own module to be found.

Throwaway kinds registered here are removed from the registry afterwards (``scratch_kind``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch

from aerec.config import PRESETS, TrainConfig
from aerec.model import base
from aerec.model.autoencoder import AutoEncoder, AutoEncoderConfig
from aerec.model.base import (
    ModelBase,
    architecture_kind,
    config_classes,
    entry,
    kind_of,
    kinds,
    model_from_architecture,
    model_names,
    register,
    trainer_for,
)
from aerec.model.bayesian_mf import BayesianMF, BayesianMFConfig
from aerec.model.ensemble import EnsembleConfig
from aerec.model.item_autoencoder import ItemAutoEncoder

#: The published network's architecture, as checkpoints wrote it before kinds existed: the
#: five keys, no ``kind``.
PUBLISHED_ARCHITECTURE = {
    "n_movies": 9, "layers": [6, 3], "activation": "selu", "output_activation": "identity",
    "dropout": 0.0,
}

_counter = itertools.count()


@pytest.fixture
def scratch_kind():
    """A kind name nobody has registered; whatever is registered under it is removed after."""
    kinds()  # the built-in kinds first, so the scratch kind is registered after them
    name = f"scratch-kind-{next(_counter)}"
    assert name not in base._REGISTRY
    try:
        yield name
    finally:
        base._REGISTRY.pop(name, None)


def _scratch_class() -> type:
    class Scratch(ModelBase):
        """A throwaway model kind for registry tests."""

    return Scratch


# ------------------------------------------------------------------------------- lookup
def test_unknown_kind_raises_key_error_naming_the_known_kinds():
    with pytest.raises(KeyError) as caught:
        entry("no-such-kind")
    message = caught.value.args[0]
    assert "no-such-kind" in message
    for known in ("autoencoder", "item-autoencoder", "bayesian-mf", "ensemble", "global-mean"):
        assert known in message
    with pytest.raises(KeyError, match="no-such-kind"):
        model_from_architecture({"kind": "no-such-kind", "n_movies": 3})


def test_entry_finds_the_class_each_kind_registered():
    assert entry("autoencoder").cls is AutoEncoder
    assert entry("item-autoencoder").cls is ItemAutoEncoder
    assert entry("bayesian-mf").cls is BayesianMF
    assert AutoEncoder.kind == "autoencoder" and BayesianMF.kind == "bayesian-mf"


def test_a_second_class_under_a_registered_kind_is_refused(scratch_kind):
    first = register(scratch_kind, summary="the first")(_scratch_class())
    assert first.kind == scratch_kind and entry(scratch_kind).cls is first

    second = _scratch_class()
    with pytest.raises(ValueError, match=scratch_kind):
        register(scratch_kind)(second)
    assert entry(scratch_kind).cls is first  # the first registration stands
    assert entry(scratch_kind).summary == "the first"
    assert second.kind == ""  # the refused class was not marked as the kind

    # registering the same class again (a module imported twice) is not a conflict
    assert register(scratch_kind, summary="the first")(first) is first


def test_a_built_in_kind_cannot_be_taken_over():
    with pytest.raises(ValueError, match="autoencoder"):
        register("autoencoder")(_scratch_class())
    assert entry("autoencoder").cls is AutoEncoder
    assert kind_of(TrainConfig()) == "autoencoder"


# ------------------------------------------------------------------------------- kind_of
@pytest.mark.parametrize(("config", "expected"), [
    (TrainConfig(), "autoencoder"),
    (PRESETS["seed"], "autoencoder"),
    (TrainConfig(orientation="item"), "item-autoencoder"),  # over "autoencoder" (priority)
    (PRESETS["item"], "item-autoencoder"),
    (TrainConfig(model="bayesian-mf", epochs=60, burn_in=10), "bayesian-mf"),
    (PRESETS["robust-bayesian-mf"], "bayesian-mf"),
    (TrainConfig(members=("item",)), "ensemble"),  # over "autoencoder" (priority)
    (PRESETS["best"], "ensemble"),
    (TrainConfig(model="auto"), None),  # planned into a kind when training starts
    (PRESETS["auto"], None),
], ids=["default", "seed", "item-orientation", "item-preset", "bayesian", "robust-bayesian",
        "members", "best-preset", "auto", "auto-preset"])
def test_kind_of_takes_the_claim_of_highest_priority(config, expected):
    assert kind_of(config) == expected
    assert config.kind == expected


def test_a_new_kind_with_claims_and_a_config_is_found_without_editing_anything(scratch_kind):
    @dataclass(frozen=True)
    class ScratchConfig:
        """A scratch family's settings."""

        width: int = 3

    before = config_classes()
    model = register(scratch_kind, config=ScratchConfig, priority=1000,
                     claims=lambda c: c.seed == 424242)(_scratch_class())

    assert kinds()[-1] == scratch_kind  # in registration order
    assert entry(scratch_kind).summary == "A throwaway model kind for registry tests."
    assert config_classes() == (*before, ScratchConfig)
    assert kind_of(TrainConfig(seed=424242)) == scratch_kind  # beats every built-in claim
    assert kind_of(TrainConfig()) == "autoencoder"  # its claim holds only where it says
    assert model.kind == scratch_kind
    with pytest.raises(KeyError, match="not trained on its own"):
        trainer_for(scratch_kind)


def test_a_kind_selected_by_model_name_claims_that_name(scratch_kind):
    register(scratch_kind, model="autoencoder", priority=-1)(_scratch_class())
    # the default claim is ``config.model == model``; the built-in claims still win on priority
    assert entry(scratch_kind).claims(TrainConfig())
    assert not entry(scratch_kind).claims(TrainConfig(model="bayesian-mf", epochs=60,
                                                      burn_in=10))
    assert kind_of(TrainConfig()) == "autoencoder"
    assert model_names().count("autoencoder") == 1


def test_the_scratch_kinds_are_gone_afterwards():
    assert not [k for k in kinds() if k.startswith("scratch-kind-")]
    assert not [c for c in config_classes() if c.__name__ == "ScratchConfig"]


# ------------------------------------------------------------------------------- names
def test_model_names_and_config_classes():
    names = model_names()
    assert "autoencoder" in names and "bayesian-mf" in names
    assert len(names) == len(set(names))
    assert "global-mean" not in names  # baselines are not trained by name

    classes = config_classes()
    assert len(classes) == len(set(classes))  # the two autoencoder kinds share one class
    for cls in (AutoEncoderConfig, BayesianMFConfig, EnsembleConfig):
        assert classes.count(cls) == 1
    assert entry("autoencoder").config is entry("item-autoencoder").config is AutoEncoderConfig


def test_trainers_are_found_for_the_trained_kinds_only():
    from aerec.train.autoencoder import AutoEncoderFamily
    from aerec.train.bayesian import BayesianFamily

    assert trainer_for("autoencoder") is AutoEncoderFamily
    assert trainer_for("item-autoencoder") is AutoEncoderFamily
    assert trainer_for("bayesian-mf") is BayesianFamily
    with pytest.raises(KeyError, match="global-mean"):
        trainer_for("global-mean")


# ------------------------------------------------------------------------------- architectures
def test_a_published_architecture_without_a_kind_is_the_user_autoencoder():
    assert architecture_kind(PUBLISHED_ARCHITECTURE) == "autoencoder"
    assert architecture_kind({**PUBLISHED_ARCHITECTURE, "orientation": "user"}) == "autoencoder"
    item = {**PUBLISHED_ARCHITECTURE, "orientation": "item", "n_users": 5}
    assert architecture_kind(item) == "item-autoencoder"
    # a dict that names its kind is that kind, whatever else it holds
    assert architecture_kind({**item, "kind": "global-mean"}) == "global-mean"


def test_an_old_published_checkpoint_architecture_still_loads():
    torch.manual_seed(0)
    original = AutoEncoder(9, layers=[6, 3], activation="selu", output_activation="identity",
                           dropout=0.0)
    assert original.architecture() == PUBLISHED_ARCHITECTURE  # written as before kinds

    rebuilt = model_from_architecture(dict(PUBLISHED_ARCHITECTURE))
    assert type(rebuilt) is AutoEncoder and rebuilt.kind == "autoencoder"
    assert rebuilt.architecture() == PUBLISHED_ARCHITECTURE
    rebuilt.load_state_dict(original.state_dict())  # strict: the same parameters
    indptr = torch.tensor([0, 2, 3])
    indices, values = torch.tensor([0, 4, 8]), torch.tensor([4.0, 2.0, 5.0])
    original.eval(), rebuilt.eval()
    expected = original.predict_dense(indptr, indices, values)
    assert expected.shape == (2, 9)
    assert torch.equal(rebuilt.predict_dense(indptr, indices, values), expected)


def test_an_item_architecture_without_a_kind_rebuilds_the_item_autoencoder():
    arch = {**PUBLISHED_ARCHITECTURE, "orientation": "item", "n_users": 5}
    rebuilt = model_from_architecture(arch)
    assert type(rebuilt) is ItemAutoEncoder and rebuilt.kind == "item-autoencoder"
    assert (rebuilt.n_movies, rebuilt.n_users) == (9, 5)
    again = rebuilt.architecture()
    assert "kind" not in again and architecture_kind(again) == "item-autoencoder"
    assert type(model_from_architecture(again)) is ItemAutoEncoder
