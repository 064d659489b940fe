"""TrainConfig: defaults are the published setup; TOML round trip; layered overrides.

Guards against: a config file that cannot be read back, typos silently ignored, overrides
that lose to the file, invalid values accepted until deep inside training.
"""

from __future__ import annotations

import dataclasses
import math

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
    """Each field of TrainConfig is declared in exactly one section class, typed, with a
    ``#:`` comment right above its declaration."""
    import dataclasses
    import inspect
    import re

    from aerec.config import SECTIONS

    declared: dict[str, str] = {}
    for section in SECTIONS:
        lines = inspect.getsource(section).splitlines()
        for i, line in enumerate(lines):
            if m := re.match(r"    (\w+): [\w\[\], .|]+ = ", line):
                assert m.group(1) not in declared, f"{m.group(1)} declared twice"
                declared[m.group(1)] = section.__name__
                assert lines[i - 1].strip().startswith("#:"), f"{m.group(1)} is undocumented"
    assert set(declared) == {f.name for f in dataclasses.fields(TrainConfig)}
    # the families' classes come from the registry, next to their models
    assert {"AutoEncoderConfig", "BayesianMFConfig", "EnsembleConfig"} <= set(declared.values())


def test_a_configuration_is_checked_and_stored_by_its_own_sections():
    from aerec.config import RunConfig
    from aerec.model.autoencoder import AutoEncoderConfig
    from aerec.model.bayesian_mf import BayesianMFConfig

    seed = PRESETS["seed"]
    assert seed.kind == "autoencoder" and PRESETS["item"].kind == "item-autoencoder"
    assert PRESETS["best"].kind == "ensemble" and PRESETS["auto"].kind is None
    assert isinstance(seed.run, RunConfig) and seed.run.epochs == 30
    assert isinstance(seed.family, AutoEncoderConfig) and seed.family.layers == (512, 256, 64)
    assert isinstance(PRESETS["bayesian-mf"].family, BayesianMFConfig)
    # an autoencoder's Bayesian settings are not its business: neither checked nor stored
    assert TrainConfig(factors=0).kind == "autoencoder"
    with pytest.raises(ConfigError, match="factors must be ≥ 1"):
        TrainConfig(model="bayesian-mf", factors=0, epochs=100)
    stored = PRESETS["bayesian-mf"].stored()
    assert "factors" in stored and "epochs" in stored and "layers" not in stored
    assert "layers" in seed.stored() and "factors" not in seed.stored()
    assert TrainConfig.from_dict(stored) == PRESETS["bayesian-mf"]
    # an old checkpoint's config held every setting: it still loads
    assert TrainConfig.from_dict(PRESETS["bayesian-mf"].to_dict()) == PRESETS["bayesian-mf"]


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
        steps=500, l2=80.0, lr_schedule="plateau", input_dropout=0.25, code_dropout=0.5,
        refeed=1, ranking="ease",
    )
    path = tmp_path / "c.toml"
    config.save_toml(path)
    assert resolve_config(path=path) == config
    assert "tied = true" in path.read_text()
    ensemble = TrainConfig(members=("item", "user-centred"), refit=True, ranking="ease")
    ensemble.save_toml(path)
    assert resolve_config(path=path) == ensemble
    text = path.read_text()
    assert 'members = ["item", "user-centred"]' in text and "tied" not in text
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


@pytest.mark.parametrize("text, message", [
    ("layers = [1.5]", r"c\.toml: layers must be whole-number widths .*\[1\.5\]"),
    ("layers = [512, 2.5, 64]", r"layers must be whole-number widths"),
    ("layers = [true]", r"layers must be whole-number widths"),
    ("layers = [1e30]", r"layers must fit in 64 bits"),
    ("weight_decay = inf", r"c\.toml: .*weight_decay must be a finite number, got inf"),
    ("input_noise = inf", r"input_noise must be a finite number, got inf"),
    ("input_noise = nan", r"input_noise must be a finite number, got nan"),
    ("bias_regularisation = inf", r"bias_regularisation must be a finite number"),
    ("checkpoint_seconds = inf", r"checkpoint_seconds must be a finite number"),
    ("lr_gamma = inf", r"lr_gamma must be a finite number"),
    ("ranking_rating_weight = nan", r"ranking_rating_weight must be a finite number"),
    ("seed = -1", r"seed must be ≥ 0, got -1"),
    ("split_seed = -7", r"split_seed must be ≥ 0, got -7"),
])
def test_values_that_are_not_what_they_claim_are_refused(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(f'preset = "seed"\n{text}\n')
    with pytest.raises(ConfigError, match=message) as refused:
        resolve_config(path=path)
    assert "\n" not in str(refused.value)


def test_every_float_setting_must_be_finite():
    for f in dataclasses.fields(TrainConfig):
        if f.type != "float":
            continue
        for bad in (math.inf, -math.inf, math.nan):
            with pytest.raises(ConfigError, match=f"{f.name} must be a finite number") as err:
                TrainConfig().replace(**{f.name: bad})
            assert str(err.value).count(f.name) == 1  # said once, not once per rule


def test_widths_and_seeds_from_python_and_the_command_line():
    with pytest.raises(ConfigError, match="whole-number widths"):
        TrainConfig(layers=(64, 1.5))
    assert TrainConfig(layers=(64.0, 8)).layers == (64, 8)  # integral floats are exact
    assert TrainConfig().replace(layers=[16, "8"]).layers == (16, 8)
    with pytest.raises(ConfigError, match="seed must be ≥ 0"):
        TrainConfig().replace(seed=-3)
    with pytest.raises(ConfigError, match="seed must fit in 64 bits"):
        TrainConfig().replace(seed=2**64)
    assert TrainConfig().replace(seed=2**63 - 1).seed == 2**63 - 1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "latin-1"])
def test_a_config_file_must_be_utf8(tmp_path, encoding):
    path = tmp_path / "c.toml"
    path.write_bytes('preset = "seed"\nepochs = 3\n# café\n'.encode(encoding))
    with pytest.raises(ConfigError, match=r"c\.toml: not UTF-8 text .*must be saved as UTF-8"):
        resolve_config(path=path)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + b'preset = "seed"\nepochs = 3\n')
    assert resolve_config(path=bom).epochs == 3  # a UTF-8 byte-order mark is fine
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_toml(tmp_path)


def test_config_errors_are_one_line_at_the_cli(tmp_path, capsys):
    from aerec.cli import main

    for text in ("layers = [1.5]", "weight_decay = inf", "seed = -1"):
        path = tmp_path / "c.toml"
        path.write_text(f'preset = "seed"\n{text}\n')
        with pytest.raises(SystemExit) as exit_info:
            main(["train", str(tmp_path / "no-data"), "--out", str(tmp_path / "run"),
                  "--config", str(path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}:") and len(err.strip().splitlines()) == 1
    path.write_bytes('preset = "seed"\n'.encode("utf-16"))
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(path)])
    assert "must be saved as UTF-8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "seed",
              "--seed", "-1"])
    assert "seed must be ≥ 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_explicit_epochs_clear_a_presets_step_budget(tmp_path):
    """``steps`` > 0 replaces ``epochs``: an ``epochs`` asked for over a preset's step budget
    used to be silently ignored (``--preset item --epochs 3`` trained 250 steps)."""
    assert PRESETS["item"].steps > 0
    config = resolve_config("item", overrides={"epochs": 3})
    assert (config.epochs, config.steps) == (3, 0)
    path = tmp_path / "c.toml"
    path.write_text('preset = "item"\nepochs = 7\n')
    assert (resolve_config(path=path).epochs, resolve_config(path=path).steps) == (7, 0)
    # a layer that sets steps keeps them (a saved config.toml holds both and means its steps)
    path.write_text('preset = "item"\nepochs = 7\nsteps = 90\n')
    assert resolve_config(path=path).steps == 90
    assert resolve_config(path=path, overrides={"steps": 40}).steps == 40
    assert resolve_config("item", overrides={"epochs": None}).steps == PRESETS["item"].steps
