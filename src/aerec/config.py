"""Training configuration: per-family settings composed into one flat :class:`TrainConfig`,
named presets, TOML in and out.

Settings are declared, typed and documented where they belong — :class:`RunConfig` here (what
to train and how to run it: the split, seed, threads, budget, device, epochs, early stopping,
refit), :class:`~aerec.model.ranked.RankingConfig` (the ranking head), and each model family's
own class next to its model (:class:`~aerec.model.autoencoder.AutoEncoderConfig`,
:class:`~aerec.model.bayesian_mf.BayesianMFConfig`,
:class:`~aerec.model.ensemble.EnsembleConfig`, found through the registry of
:mod:`aerec.model.base`). :class:`TrainConfig` is their flat union: one ``key = value`` per
setting in a TOML file, one option per setting on the command line, and the form presets are
written in. ``config.run`` and ``config.family`` are the typed sections; a configuration is
validated by its run settings and its own family's (an autoencoder's ``factors`` is never
checked), and a checkpoint stores only those (:meth:`TrainConfig.stored`).

A configuration is resolved in layers — a preset (default ``auto``), then a TOML file, then
explicit overrides (e.g. command-line options)::

    config = resolve_config(preset="seed", path="my.toml", overrides={"epochs": 300})

A TOML file is flat ``key = value`` lines using the field names; it may name its base with
``preset = "NAME"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from aerec.fileio import atomic_write
from aerec.model.base import config_classes, kind_of, model_names
from aerec.model.ranked import RankingConfig

try:  # Python ≥ 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DEVICE_NAMES = ("cpu", "cuda", "auto")
#: ``model`` that is not a kind but a plan: the kind is chosen from the data when training
#: starts (:mod:`aerec.train.auto`).
AUTO = "auto"


class ConfigError(ValueError):
    """A configuration value, file or override that cannot be used; the message says which."""


@dataclass(frozen=True)
class RunConfig:
    """What is trained and how the run goes: the model, the budget, epochs and early stopping,
    the refit, the data split and how to execute. Defaults are the published ``seed`` run."""

    #: What is trained: "autoencoder" (every option below), or "bayesian-mf" — a Bayesian
    #: matrix factorisation sampled by Gibbs sampling (``aerec.model.bayesian_mf``), which
    #: scores users from their ratings like an encoder; it uses ``factors``,
    #: ``noise_precision``, ``noise_scales``, ``audience_prior``, ``burn_in``,
    #: ``kept_samples``, ``epochs`` (= sweeps), ``patience``, ``seed``, ``refit``,
    #: ``clip_predictions`` and ``ranking``, and no optimiser settings. On the CPU its row
    #: draws are a compiled kernel; with ``device = "cuda"`` they are batched PyTorch
    #: operations on the GPU (``aerec.train.gibbs_torch``), the rest of a sweep stays NumPy.
    model: str = "autoencoder"
    #: Wall-clock budget of the whole run in seconds (``aerec train --time-budget 10m``); 0 = no
    #: limit. Epochs, sweeps, ensemble members and refits are planned to fit it: an epoch is
    #: started only when it is expected to end in time, a refit gets what is left, and what
    #: did not fit is reported (``aerec.train.budget``). ``model = "auto"`` also chooses the
    #: models from it (``aerec.train.auto``).
    time_budget: float = 0.0
    #: Number of passes over the training rows.
    epochs: int = 30
    #: Stop when validation RMSE has not improved for this many epochs; 0 = never stop early.
    patience: int = 0
    #: After training, retrain the same configuration from scratch on training + validation
    #: ratings for the selected (best) number of epochs; that model becomes ``best.pt``. The
    #: selection itself used the validation split only.
    refit: bool = False
    #: Clamp predictions to the rating scale in the prediction API (training losses stay raw;
    #: RMSEs are always computed on clipped predictions).
    clip_predictions: bool = False
    #: Write last.pt / best.pt / metrics.csv at most every this many seconds (and always at
    #: the end); 0 = after every epoch. For runs of many sub-second epochs, where writing
    #: checkpoints would otherwise dominate; an interrupted run then loses at most this long.
    checkpoint_seconds: float = 0.0
    #: Split protocol passed to ``aerec.data.splits.make_splits`` ("auto" honours a fixed test).
    split_protocol: str = "auto"
    #: Fraction of ratings held out as the test set (when the dataset has no fixed test split).
    test_fraction: float = 0.2
    #: Fraction of the remaining training ratings held out for validation / model selection.
    validation_fraction: float = 0.1
    #: ``user`` protocol: share of each test user's ratings held out (the rest is their input).
    holdout_fraction: float = 0.5
    #: Seed of the split (independent of the training ``seed``).
    split_seed: int = 0
    #: Seed for initialisation, user shuffling and dropout masks.
    seed: int = 0
    #: CPU threads for torch; 0 = all cores. Results are reproducible for a fixed count.
    threads: int = 0
    #: cpu, cuda or auto (cuda when available).
    device: str = "cpu"

    @staticmethod
    def problems(c: Any) -> Iterator[str]:
        """What is wrong with the run settings of the flat config ``c``."""
        models = (*model_names(), AUTO)
        if c.model not in models:
            yield f"model {c.model!r} is not one of {', '.join(models)}"
        if not (c.time_budget >= 0 and math.isfinite(c.time_budget)):
            yield f"time_budget must be ≥ 0 seconds (0 = no limit), got {c.time_budget}"
        if not c.checkpoint_seconds >= 0:
            yield f"checkpoint_seconds must be ≥ 0, got {c.checkpoint_seconds}"
        if c.epochs < 1:
            yield f"epochs must be ≥ 1, got {c.epochs}"
        if c.patience < 0:
            yield f"patience must be ≥ 0 (0 = off), got {c.patience}"
        if not 0 <= c.test_fraction < 1:
            yield f"test_fraction must be in [0, 1), got {c.test_fraction}"
        if not 0 <= c.validation_fraction < 1:
            yield f"validation_fraction must be in [0, 1), got {c.validation_fraction}"
        if not 0 < c.holdout_fraction < 1:
            yield f"holdout_fraction must be in (0, 1), got {c.holdout_fraction}"
        if c.threads < 0:
            yield f"threads must be ≥ 0 (0 = all cores), got {c.threads}"
        if c.device not in DEVICE_NAMES:
            yield f"device {c.device!r} is not one of {', '.join(DEVICE_NAMES)}"


#: The sections of a flat :class:`TrainConfig`, in the order of its fields.
SECTIONS: tuple[type, ...] = (RunConfig, RankingConfig, *config_classes())


class _Flat:
    """The methods of :class:`TrainConfig` (its fields come from :data:`SECTIONS`)."""

    def __post_init__(self) -> None:
        layers = self.layers
        if isinstance(layers, str):
            layers = parse_layers(layers)
        object.__setattr__(self, "layers", _widths(layers))
        members = self.members
        if isinstance(members, str):
            members = parse_members(members)
        object.__setattr__(self, "members", tuple(str(m) for m in members))
        problems = list(_number_problems(self))
        # one message per unusable field: not also every rule that compares with it
        unusable = [re.compile(rf"\b{p.split()[0]}\b") for p in problems]
        problems += [p for p in _problems(self) if not any(u.search(p) for u in unusable)]
        if problems:
            raise ConfigError("invalid training configuration: " + "; ".join(problems))

    @property
    def kind(self) -> str | None:
        """The model kind this configuration trains (the registry's answer; ``None`` for
        ``model = "auto"``, which is planned into a kind when training starts)."""
        return kind_of(self)

    def sections(self) -> tuple[type, ...]:
        """The sections that apply: the run, the ranking head and this kind's family."""
        kind = self.kind
        family = () if kind is None else tuple(c for c in SECTIONS[2:]
                                              if c is _family_class(kind))
        return (RunConfig, RankingConfig, *family)

    def section(self, cls: type) -> Any:
        """The typed section ``cls`` of this configuration (e.g. ``config.section(RunConfig)``)."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(cls)})

    @property
    def run(self) -> RunConfig:
        """The run settings, typed."""
        return self.section(RunConfig)

    @property
    def family(self) -> Any:
        """This kind's family settings, typed (``None`` for ``model = "auto"``)."""
        kind = self.kind
        return None if kind is None else self.section(_family_class(kind))

    def describe(self) -> str:
        """One line that says what this configuration trains (its family's words)."""
        if self.kind is None:
            return "auto: the models are chosen from the data's shape and the time budget"
        return type(self.family).describe(self)

    def stored(self) -> dict[str, Any]:
        """:meth:`to_dict` restricted to the settings that apply (:meth:`sections`): what a
        checkpoint and a run's ``config.toml`` keep. Loading it back gives the same run (the
        other settings take their defaults)."""
        names = {f.name for section in self.sections() for f in fields(section)}
        return {k: v for k, v in self.to_dict().items() if k in names}

    @property
    def resolved_output_activation(self) -> str:
        """The output activation's name, with "same" resolved."""
        return self.activation if self.output_activation == "same" else self.output_activation

    def effective_weight_decay(self, n_ratings: int) -> float:
        """The optimiser's weight decay for ``n_ratings`` training ratings (see ``l2``)."""
        return self.l2 / max(int(n_ratings), 1) if self.l2 > 0 else self.weight_decay

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (``layers`` as a list), suitable for JSON, TOML and checkpoints."""
        out = dataclasses.asdict(self)
        out["layers"] = list(self.layers)
        out["members"] = list(self.members)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a dict of field values; unknown keys are an error naming ``source``."""
        return cls().replace(_source=source, **values)

    def replace(self, _source: str = "override", **changes: Any) -> TrainConfig:
        """A copy with some fields changed; ``None`` values are ignored (unset options)."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ConfigError(
                f"{_source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        coerced = {
            k: _coerce(known[k], v, _source) for k, v in changes.items() if v is not None
        }
        try:
            return dataclasses.replace(self, **coerced)
        except ConfigError as exc:
            if _source == "override":
                raise
            raise ConfigError(f"{_source}: {exc}") from None

    def to_toml(self) -> str:
        """Flat TOML text, one ``key = value`` line per setting that applies (:meth:`stored`;
        readable by :func:`load_toml`)."""
        lines = ["# aerec training configuration"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in self.stored().items()]
        return "\n".join(lines) + "\n"

    def save_toml(self, path: str | Path) -> None:
        """Write :meth:`to_toml` atomically (temporary file, then rename)."""
        write_text_atomic(Path(path), self.to_toml())


def _flat_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    seen: dict[str, type] = {}
    out = []
    for section in SECTIONS:
        for f in fields(section):
            if f.name in seen:
                raise TypeError(f"setting {f.name!r} is declared by both "
                                f"{seen[f.name].__name__} and {section.__name__}")
            seen[f.name] = section
            out.append((f.name, f.type, dataclasses.field(default=f.default)))
    return out


#: Everything that determines a training run, flat: the union of :data:`SECTIONS` (each field
#: is declared and documented in its section). Defaults are the published ``seed`` setup.
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig", _flat_fields(), bases=(_Flat,), frozen=True,
    namespace={"__module__": __name__},
)
TrainConfig.__doc__ = (
    "Everything that determines a training run: the flat union of "
    + ", ".join(s.__name__ for s in SECTIONS) + ". Defaults are the published ``seed`` setup."
)


#: Largest integer a setting may hold: TOML (config.toml, checkpoints) stores 64-bit integers.
INT_LIMIT = 2**63 - 1


def _number_problems(c: Any) -> Iterator[str]:
    """Numbers that are not what a setting claims: infinite or NaN floats (no float setting
    means anything at infinity), integers past 64 bits, negative seeds."""
    for f in fields(c):
        value = getattr(c, f.name)
        if f.type == "float" and isinstance(value, float) and not math.isfinite(value):
            yield f"{f.name} must be a finite number, got {value}"
        elif f.type == "int" and isinstance(value, int) and abs(value) > INT_LIMIT:
            yield f"{f.name} must fit in 64 bits, got {value}"
    for name in ("seed", "split_seed"):
        value = getattr(c, name)
        if isinstance(value, int) and value < 0:
            yield f"{name} must be ≥ 0, got {value}"
    if any(w > INT_LIMIT for w in c.layers):
        yield f"layers must fit in 64 bits, got {list(c.layers)}"


def _width(value: Any) -> int:
    """One layer width: a whole number (an int, an integral float or a numeral), never a
    fraction or a bool silently truncated."""
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    return operator.index(value)


def _widths(values: Any) -> tuple[int, ...]:
    """Layer widths as a tuple of ints; a ``ConfigError`` names any that is not a whole
    number."""
    try:
        return tuple(_width(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        shown = list(values) if isinstance(values, (list, tuple)) else values
        raise ConfigError(
            f"layers must be whole-number widths like [512, 256, 64], got {shown!r}"
        ) from None


def _problems(c: Any) -> Iterator[str]:
    """What is wrong with the settings that apply to ``c`` (its run, ranking head and own
    family's sections)."""
    for section in c.sections():
        yield from section.problems(c)


def _family_class(kind: str) -> type:
    from aerec.model.base import config_class

    return config_class(kind)


def _coerce(f: dataclasses.Field, value: Any, source: str) -> Any:
    """Check and convert one value to the field's declared type."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if f.name == "layers":
            return parse_layers(value) if isinstance(value, str) else _widths(value)
        if f.name == "members":
            if isinstance(value, str):
                return parse_members(value)
            if not all(isinstance(v, str) for v in value):
                raise TypeError
            return tuple(v.strip() for v in value)
        if kind == "bool":
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(value, bool):
            raise TypeError
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value.strip().lower()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {f.name} = {value!r} is not a valid {kind}") from None
    return value  # pragma: no cover


def parse_layers(text: str) -> tuple[int, ...]:
    """``"512,256,64"`` → ``(512, 256, 64)``."""
    try:
        widths = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(
            f"layers {text!r}: expected comma-separated widths like 512,256,64"
        ) from None
    if not widths:
        raise ConfigError(f"layers {text!r}: no widths given")
    return widths


def parse_members(text: str) -> tuple[str, ...]:
    """``"item, user-deep"`` → ``("item", "user-deep")`` (ensemble member presets)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    with atomic_write(path) as f:
        f.write(text)


def _encoding_hint(raw: bytes) -> str:
    """"looks like UTF-16; " when ``raw`` starts like UTF-16/32 text, else ""."""
    if raw.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "looks like UTF-32; "
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(raw) > 1 and b"\x00" in raw[:2]):
        return "looks like UTF-16; "
    return ""


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML configuration file into a dict (errors name the file)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration file ({e.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark: harmless, dropped
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text ({_encoding_hint(raw)}byte {e.start} is not UTF-8); a "
            "configuration file must be saved as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(f"{path}: expected flat key = value settings, found table(s) {nested}")
    return data


#: I-AutoRec (Sedhain et al. 2015): a movie's ratings by every user in, one layer of 500
#: sigmoid units, identity output, AutoRec's λ = 100 on the summed error; full-batch Adam on
#: MovieLens 100K (2,048 movies per step), 250 optimiser steps, early stopping on validation.
_ITEM = TrainConfig(
    orientation="item", layers=(500,), activation="sigmoid", output_activation="identity",
    dropout=0.0, lr=3e-3, l2=100.0, batch_size=2048, steps=250, patience=25,
    clip_predictions=True, checkpoint_seconds=30.0,
)

#: Named configurations. ``seed`` is the published autoencoder, trained exactly as published.
#: The others are documented in docs/results.md with their measured validation and test error.
PRESETS: dict[str, TrainConfig] = {
    # The default: the model that serves this data best within the time budget (10 minutes
    # unless told), planned from the data's shape when training starts (aerec.train.auto).
    "auto": TrainConfig(model="auto", time_budget=600.0, clip_predictions=True),
    "seed": TrainConfig(),
    # The item-based autoencoder (I-AutoRec) — the strongest single network here.
    "item": _ITEM,
    # I-AutoRec trained as a denoiser (half of each movie's input ratings hidden per step);
    # width, L2 and learning rate from `aerec tune --space item` on MovieLens 100K u1
    # (validation RMSE 0.884 against 0.888 for `item`; docs/results.md).
    "item-denoising": _ITEM.replace(input_dropout=0.5, lr=6e-3, steps=400, seed=1),
    # The runner-up of the same search: 300 units, λ = 70 — a different network for ensembles.
    "item-denoising-300": _ITEM.replace(
        layers=(300,), l2=70.0, input_dropout=0.5, lr=6e-3, steps=400, seed=2
    ),
    # A user-based AutoRec that models the residual of μ + user and movie biases.
    "user-centred": TrainConfig(
        layers=(500,), activation="sigmoid", output_activation="identity", dropout=0.0,
        centring="biases", lr=3e-3, l2=100.0, batch_size=2048, steps=150, patience=20,
        clip_predictions=True, checkpoint_seconds=30.0,
    ),
    # Bayesian matrix factorisation (BPMF) sampled by Gibbs sampling: not an autoencoder, but
    # it scores a user from their ratings alone like one (exact posterior inference as the
    # encoder), and it errs differently from the networks, which is what an ensemble needs.
    "bayesian-mf": TrainConfig(
        model="bayesian-mf", factors=32, noise_precision=2.0, epochs=500, burn_in=50,
        kept_samples=64, patience=100, clip_predictions=True,
    ),
    # The same with robust noise (``noise_scales``): a noise-precision scale per user and per
    # movie. On MovieLens 100K u1 validation 0.887 against 0.896 for `bayesian-mf`, as good
    # as the best single network (docs/results.md).
    "robust-bayesian-mf": TrainConfig(
        model="bayesian-mf", factors=32, noise_precision=2.0, noise_scales=5.0, epochs=500,
        burn_in=50, kept_samples=64, patience=100, clip_predictions=True,
    ),
    # Robust noise and the audience prior (``audience_prior``: a movie's prior mean depends on
    # who rated it). On MovieLens 100K u1 validation 0.877, against 0.887 for
    # `robust-bayesian-mf`: the strongest single model here.
    "audience-bayesian-mf": TrainConfig(
        model="bayesian-mf", factors=32, noise_precision=2.0, noise_scales=5.0,
        audience_prior=True, epochs=500, burn_in=50, kept_samples=64, patience=100,
        clip_predictions=True,
    ),
    # DeepRecommender (Kuchaiev & Ginsburg 2017): SELU, 512-512-1024, 80 % dropout on the
    # code, tied decoder, dense re-feeding, SGD with momentum.
    "deep": TrainConfig(
        layers=(512, 512, 1024), activation="selu", output_activation="selu", dropout=0.0,
        code_dropout=0.8, tied=True, refeed=1, optimizer="sgd", lr=0.005, momentum=0.9,
        weight_decay=0.0, batch_size=128, steps=3000, patience=10, clip_predictions=True,
        checkpoint_seconds=30.0,
    ),
    # The validated best: the two denoising item-based autoencoders and the Bayesian
    # factorisation with robust noise and the audience prior, each early-stopped on validation
    # and then refitted on training +
    # validation ratings, averaged with weights fitted on the validation ratings (NNLS), and
    # an EASE ranking head for top-N lists (λ and blend weight chosen on validation). Members
    # that earned no weight on validation (`item`, `user-centred`, `bayesian-mf`,
    # `robust-bayesian-mf`) were dropped.
    "best": TrainConfig(
        members=("item-denoising", "item-denoising-300", "audience-bayesian-mf"),
        ensemble_weights="fitted", refit=True, ranking="ease", clip_predictions=True,
    ),
}


#: The preset used when none is named.
DEFAULT_PRESET = "auto"


def resolve_config(
    preset: str | None = None,
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Preset, then TOML file, then overrides (``None`` values skipped), each over the last.

    The preset is ``preset`` if given, else the file's ``preset = "..."`` key, else ``auto``
    (:data:`DEFAULT_PRESET`); ``seed`` is the published configuration. An ``epochs`` set by
    the file or the overrides clears a preset's step budget (:func:`explicit_epochs`).
    """
    file_values: dict[str, Any] = dict(load_toml(path)) if path is not None else {}
    file_preset = file_values.pop("preset", None)
    name = preset or file_preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    config = PRESETS[name]
    if file_values:
        config = config.replace(_source=str(path), **explicit_epochs(file_values))
    if overrides:
        config = config.replace(**explicit_epochs(overrides))
    return config


def explicit_epochs(values: Mapping[str, Any]) -> dict[str, Any]:
    """One layer of settings with its ``epochs`` honoured: a layer that sets ``epochs`` but not
    ``steps`` also sets ``steps = 0``, since a step budget from a layer below (a preset's)
    replaces ``epochs`` (``steps`` > 0 wins) and would silently ignore the epochs asked for.
    A layer that sets ``steps`` (or both, as a saved ``config.toml`` does) is kept as is."""
    out = dict(values)
    if out.get("epochs") is not None and out.get("steps") is None:
        out["steps"] = 0
    return out


__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "ConfigError",
    "TrainConfig",
    "explicit_epochs",
    "load_toml",
    "parse_layers",
    "resolve_config",
    "write_text_atomic",
]
