"""TrainConfig: defaults are the published setup; TOML round trip; layered overrides.

Guards against: a config file that cannot be read back, typos silently ignored, overrides
that lose to the file, invalid values accepted until deep inside training.
"""

from __future__ import annotations

import pytest

from aerec.config import PRESETS, ConfigError, TrainConfig, load_toml, resolve_config


def test_seed_preset_is_the_published_configuration():
    c = PRESETS["seed"]
    assert c.layers == (512, 256, 64)
    assert (c.activation, c.resolved_output_activation, c.dropout) == ("relu", "relu", 0.1)
    assert (c.optimizer, c.lr, c.weight_decay) == ("adam", 1e-4, 1e-5)
    assert (c.batch_size, c.epochs, c.patience) == (128, 30, 0)
    assert c == TrainConfig()


def test_toml_round_trip(tmp_path):
    config = TrainConfig(
        layers=(64, 8), activation="selu", output_activation="identity", lr=3.5e-4,
        weight_decay=0.0, lr_schedule="cosine", epochs=7, patience=2, split_protocol="random",
    )
    path = tmp_path / "config.toml"
    config.save_toml(path)
    assert resolve_config(path=path) == config
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert load_toml(path)["layers"] == [64, 8]


def test_layers_preset_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "seed"\nepochs = 50\nlr = 0.001\nlayers = "128,32"\n')
    config = resolve_config(path=path, overrides={"epochs": 300, "lr": None, "dropout": 0.2})
    assert config.epochs == 300  # override beats the file
    assert config.lr == 0.001  # None means "not given": the file's value stays
    assert config.layers == (128, 32)
    assert config.dropout == 0.2
    assert config.batch_size == 128  # from the preset


def test_unknown_keys_and_bad_values_are_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochz = 3\n")
    with pytest.raises(ConfigError, match=r"c\.toml.*unknown setting\(s\) epochz"):
        resolve_config(path=path)
    with pytest.raises(ConfigError, match="dropout must be in"):
        TrainConfig().replace(dropout=1.5)
    with pytest.raises(ConfigError, match="activation 'tanhh'"):
        TrainConfig().replace(activation="tanhh")
    with pytest.raises(ConfigError, match="epochs = 2.5 is not a valid int"):
        TrainConfig().replace(epochs=2.5)
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        resolve_config(preset="nope")
    with pytest.raises(ConfigError, match="layers '512,x'"):
        TrainConfig().replace(layers="512,x")
    path.write_text("epochs = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config(path=path)


def test_every_setting_is_documented_where_declared():
    """Each field of TrainConfig has a ``#:`` comment right above its declaration."""
    import inspect
    import re

    from aerec import config as config_module

    lines = inspect.getsource(config_module.TrainConfig).splitlines()
    declared = {
        m.group(1): i for i, line in enumerate(lines)
        if (m := re.match(r"    (\w+): [\w\[\], .]+ = ", line))
    }
    assert set(declared) == {f.name for f in __import__("dataclasses").fields(TrainConfig)}
    undocumented = [n for n, i in declared.items() if not lines[i - 1].strip().startswith("#:")]
    assert not undocumented


def test_presets_are_valid_and_named_for_what_they_are():
    assert {"seed", "item", "best"} <= set(PRESETS)
    item = PRESETS["item"]
    assert (item.orientation, item.layers, item.activation) == ("item", (500,), "sigmoid")
    best = PRESETS["best"]
    assert best.members and best.refit and best.ranking == "ease"
    for name in best.members:
        assert name in PRESETS and not PRESETS[name].members
    for config in PRESETS.values():
        assert TrainConfig.from_dict(config.to_dict()) == config


def test_new_options_round_trip_through_toml(tmp_path):
    config = TrainConfig(
        orientation="item", tied=True, clip_predictions=True, refit=True, centring="biases",
        members=("item", "user-centred"), steps=500, l2=80.0, lr_schedule="plateau",
        input_dropout=0.25, code_dropout=0.5, refeed=1, ranking="ease",
    )
    path = tmp_path / "c.toml"
    config.save_toml(path)
    assert resolve_config(path=path) == config
    text = path.read_text()
    assert "tied = true" in text and 'members = ["item", "user-centred"]' in text
    assert resolve_config(overrides={"tied": "true", "members": "item, deep"}).members == (
        "item", "deep")
    with pytest.raises(ConfigError, match="tied = 1 is not a valid bool"):
        TrainConfig().replace(tied=1)
    with pytest.raises(ConfigError, match="orientation 'movie'"):
        TrainConfig().replace(orientation="movie")
    with pytest.raises(ConfigError, match="centring"):
        TrainConfig().replace(centring="median")
    assert TrainConfig(l2=72.0).effective_weight_decay(7200) == pytest.approx(0.01)
    assert TrainConfig(weight_decay=3e-4).effective_weight_decay(7200) == 3e-4
