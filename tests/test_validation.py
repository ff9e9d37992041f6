"""config.validate: declarative ranges, choices and cross-field rules, checked up front."""

from __future__ import annotations

import dataclasses

import pytest

import gankit
from gankit.cli import main
from gankit.config import (
    CHOICES,
    RULES,
    SECTIONS,
    Config,
    ConfigError,
    ModelConfig,
    apply_overrides,
    from_dict,
    list_presets,
    load_preset,
    load_toml,
    save_toml,
    to_dict,
    validate,
    validate_section,
)
from gankit.device import DEVICES
from gankit.errors import GankitError
from gankit.layers.attention import NONLOCAL_MODES
from gankit.layers.init import INIT_STYLES
from gankit.losses import LOSS_NAMES
from gankit.models import attention_type, list_archs
from gankit.models.style import ACTIVATIONS, BLOCKS, DOWNSAMPLERS, NORMS
from gankit.training.ambient import AMBIENT_MODES


def test_choices_mirror_the_registries():
    assert sorted(CHOICES["model.arch"]) == list_archs()
    assert CHOICES["model.init"] == tuple(INIT_STYLES)
    assert CHOICES["train.loss"] == LOSS_NAMES
    assert CHOICES["train.device"] == DEVICES
    assert CHOICES["train.ambient_mode"] == AMBIENT_MODES
    assert CHOICES["model.G_norm"] == CHOICES["model.D_norm"] == NORMS
    assert CHOICES["model.activation"] == ACTIVATIONS
    assert CHOICES["model.D_down"] == DOWNSAMPLERS
    assert CHOICES["model.G_block"] == CHOICES["model.D_block"] == BLOCKS
    modes = {c.split(":", 1)[1] for c in CHOICES["model.attn_type"] if c.startswith("nonlocal:")}
    assert modes == set(NONLOCAL_MODES)


@pytest.mark.parametrize(
    "key, bad",
    [
        ("train.loss", "hinje"),
        ("train.amp", "fp16"),
        ("model.arch", "stylegan"),
        ("model.init", "glorot"),
        ("model.attn_type", "nonlocal:softmax"),
        ("train.device", "tpu"),
    ],
)
def test_enum_typo_fails_in_validate_and_in_set(key, bad):
    section, name = key.split(".")
    cfg = Config()
    setattr(getattr(cfg, section), name, bad)  # code bypassing --set
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert f"'{key}'" in msg and repr(bad) in msg and ", ".join(CHOICES[key]) in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match=f"'{key}': unknown value"):
        apply_overrides(Config(), [f"{key}={bad}"])


@pytest.mark.parametrize("command", [["info"], ["train", "--quiet"], ["bench", "--steps", "1"]])
def test_enum_typo_fails_at_start_up(tmp_path, capsys, command):
    argv = [*command, "--set", "train.loss=hinje"]
    if command[0] == "train":
        argv += ["--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: config key 'train.loss': unknown value 'hinje'; valid:")
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_range_checked_when_built_in_code():
    cfg = Config()
    cfg.train.accumulate = 0
    with pytest.raises(ConfigError, match="'train.accumulate' must be > 0, got 0"):
        validate(cfg)


@pytest.mark.parametrize(
    "overrides, keys",
    [
        (["train.aux_weight=0.5"], "'train.aux_weight', 'model.aux_classifier'"),
        (["model.hier=true"], "'model.hier', 'model.shared_dim'"),
        (["eval.every=100", "eval.metrics=[]"], "'eval.every', 'eval.metrics'"),
    ],
)
def test_cross_field_rules(overrides, keys):
    cfg = apply_overrides(Config(), overrides)  # each value alone is fine
    with pytest.raises(ConfigError, match=f"config keys {keys}:"):
        validate(cfg)
    assert all(rule.ok(Config()) for rule in RULES)


def test_every_preset_validates():
    for name in list_presets():
        validate(load_preset(name))


def test_removed_attn_pool_key_names_its_replacement():
    with pytest.raises(ConfigError, match="'model.attn_pool' was replaced by model.attn_type"):
        apply_overrides(Config(), ["model.attn_pool=false"])


@pytest.mark.parametrize(
    "arch, pool, expected",
    [("biggan", True, "biggan"), ("dcgan", False, "sagan"), ("sagan", True, "sagan"),
     ("sngan", True, "sagan"), ("biggan", False, "sagan")],
)  # fmt: skip
def test_stored_configs_with_attn_pool_keep_their_attention(arch, pool, expected):
    """Run dirs written before attn_type hold attn_pool; sagan/sngan always ignored it."""
    cfg = from_dict({"model": {"arch": arch, "attn_pool": pool}}, source="old config.toml")
    assert attention_type(cfg.model) == expected
    assert "attn_pool" not in to_dict(cfg)["model"]


def test_model_section_defaults_are_valid():
    validate(Config(model=ModelConfig()))


FLOAT_KEYS = [
    f"{section}.{f.name}"
    for section in SECTIONS
    for f in dataclasses.fields(getattr(Config(), section))
    if f.type in ("float", "list[float]")
]


def test_float_keys_are_found():
    assert {"model.sn_eps", "train.lr_G", "train.betas_D", "eval.truncation"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("bad", ["inf", "-inf", "nan"])
def test_no_float_key_takes_a_non_finite_value(key, bad):
    value = f"{bad},0.5" if key.startswith("train.betas") else bad
    with pytest.raises(ConfigError, match=f"'{key}' must be a finite number, got "):
        apply_overrides(Config(), [f"{key}={value}"])
    section, name = key.split(".")
    cfg = Config()
    number = float(bad)
    setattr(getattr(cfg, section), name, [number, 0.5] if "betas" in key else number)
    with pytest.raises(ConfigError, match=f"'{key}' must be a finite number"):
        validate(cfg)


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("train.steps", "abc", "config key 'train.steps' expects an integer, got 'abc'"),
        ("train.steps", 2.0, "config key 'train.steps' expects an integer, got 2.0"),
        ("train.lr_G", "1e-4", "config key 'train.lr_G' expects a number, got '1e-4'"),
        ("train.ema", 1, "config key 'train.ema' expects true/false, got 1"),
        ("train.betas_G", 0.5, "config key 'train.betas_G' expects a list of float, got 0.5"),
        ("model.G_attn", ["16"], "config key 'model.G_attn' expects a list of int, got ['16']"),
        ("model.arch", None, "config key 'model.arch' expects a string, got None"),
        ("train.compile", 3, "config key 'train.compile' expects bool or str, got 3"),
        ("train.betas_G", [0.5], "config key 'train.betas_G' expects 2 numbers"),
        ("model.dim_z", 10**9, "config key 'model.dim_z' must be in 1..1024"),
        ("model.channels", 2, "config key 'model.channels' must be 1 or 3"),
        ("train.steps", 10**30, "config key 'train.steps' must be in 1..10**9"),
    ],
)
def test_validate_checks_types_set_in_code(key, value, fragment):
    section, name = key.split(".")
    cfg = Config()
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_validate_refuses_misspelt_attributes_set_in_code():
    """A dataclass takes any new attribute, so a typo set in code would be silently ignored."""
    cfg = Config()
    cfg.train.lr_g = 1e-3
    with pytest.raises(
        ConfigError, match=r"unknown config key 'train.lr_g'; valid keys in \[train\]"
    ):
        validate(cfg)
    cfg = Config()
    cfg.trian = Config().train
    with pytest.raises(ConfigError, match="unknown config section 'trian'; valid sections: model"):
        validate(cfg)


def test_validate_accepts_ints_for_floats_and_tuples_for_lists():
    cfg = Config()
    cfg.train.lr_G, cfg.train.betas_G, cfg.model.G_attn = 1, (0.0, 0.9), (16,)
    validate(cfg)


@pytest.mark.parametrize("bad", [None, {"train": {"steps": 2}}, "mnist-sagan"])
def test_validate_wants_a_config(bad):
    with pytest.raises(
        ConfigError, match=f"validate expects a gankit.Config, got {type(bad).__name__}"
    ):
        gankit.validate(bad)


def test_validate_wants_section_dataclasses():
    cfg = Config()
    cfg.train = {"steps": 2}
    with pytest.raises(
        ConfigError, match="section 'train' must be a gankit.config.TrainConfig, got dict"
    ):
        validate(cfg)
    with pytest.raises(ConfigError, match="section 'model' must be a gankit.config.ModelConfig"):
        validate_section("model", Config())


@pytest.mark.parametrize("command", [["info"], ["train", "--quiet"]])
@pytest.mark.parametrize(
    "override, fragment",
    [("train.lr_G=inf", "'train.lr_G' must be a finite number"),
     ("train.betas_G=0.5", "'train.betas_G' expects 2 numbers"),
     ("model.channels=2", "'model.channels' must be 1 or 3")],
)  # fmt: skip
def test_bad_numbers_fail_at_start_up(tmp_path, capsys, command, override, fragment):
    err = _start_up_error(tmp_path, capsys, command, override)
    assert err.startswith("gankit: error: config key ") and fragment in err


def _start_up_error(tmp_path, capsys, command: list[str], override: str) -> str:
    """stderr of ``command --set override``, after checking that it exits 2 with one line
    and (``train``) creates no run directory."""
    argv = [*command, "--set", override]
    if command[0] == "train":
        argv += ["--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()
    return err


@pytest.mark.parametrize(
    "override, fragment",
    [("train.diffaug=color,foo", "train.diffaug: unknown transform 'foo'"),
     ("train.cr_augment=foo", "train.cr_augment: unknown transform 'foo'"),
     ("train.compile=fastest", "'train.compile': train.compile must be auto, true, false"),
     ("train.measurement=foo", "train.measurement 'foo': unknown measurement 'foo'"),
     ("train.measurement=block_pixels:p=2", "'block_pixels:p=2': p must be in [0, 1], got 2"),
     ("train.d_measurement=block_patch:size=64", "train.d_measurement 'block_patch:size=64'"),
     ("eval.metrics=fid,foo", "'eval.metrics': unknown metric 'foo'; valid metrics:")],
)  # fmt: skip
@pytest.mark.parametrize("command", [["info"], ["train", "--quiet"]])
def test_component_grammars_fail_in_validate_and_at_start_up(
    tmp_path, capsys, command, override, fragment
):
    """``gankit.validate`` (and so ``info``, like ``train``) also checks the values whose
    grammar a component parses: policies, measurement specs for images of the model's size
    (a 64-pixel patch on 32-pixel images), metric names. ``config.validate`` alone does not
    know them (it sits below those components)."""
    cfg = apply_overrides(Config(), [override])
    with pytest.raises(GankitError) as err:
        gankit.validate(cfg)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    line = _start_up_error(tmp_path, capsys, command, override)
    assert line.startswith("gankit: error: ") and fragment in line


@pytest.mark.parametrize("key", ["ema_decay", "lecam_decay"])
def test_a_decay_of_one_is_refused_for_training_but_a_stored_one_still_reads(tmp_path, key):
    """At 1 the average never leaves its start (G_ema stays the initial G): refused by every
    command that validates a config to train, while a run that stored it stays readable."""
    cfg = apply_overrides(Config(), [f"train.{key}=1"])
    with pytest.raises(ConfigError, match=rf"^config key 'train.{key}' must be below 1 to train"):
        gankit.validate(cfg)
    validate(cfg)  # the fields' own check (what reading a stored config runs) takes it
    save_toml(cfg, tmp_path / "config.toml")
    assert getattr(load_toml(tmp_path / "config.toml").train, key) == 1.0
