"""Typed config: presets, overrides, TOML round trip and one-line errors."""

import json

import numpy as np
import pytest

from gankit.config import (
    DEFAULT_PRESET,
    Config,
    ConfigError,
    apply_overrides,
    from_dict,
    list_presets,
    load_preset,
    load_toml,
    save_toml,
    to_dict,
    validate,
)


def test_default_preset_exists_and_loads():
    assert DEFAULT_PRESET in list_presets()
    cfg = load_preset()
    assert cfg.preset == DEFAULT_PRESET


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads(name):
    assert load_preset(name).preset == name


def test_overrides_are_typed():
    cfg = apply_overrides(
        Config(),
        [
            "train.batch_size=32",
            "train.lr_G=1e-3",
            "train.ema=false",
            "model.G_attn=64,32",
            "train.betas_D=[0.5, 0.9]",
            "train.steps=1e3",
            "data.path=/x/y",
            "data.limit=9007199254740993",  # 2**53 + 1: exact, not through a float
        ],
    )
    assert cfg.train.batch_size == 32 and isinstance(cfg.train.batch_size, int)
    assert cfg.train.lr_G == pytest.approx(1e-3)
    assert cfg.train.ema is False
    assert cfg.model.G_attn == [64, 32]
    assert cfg.train.betas_D == [0.5, 0.9]
    assert cfg.train.steps == 1000
    assert cfg.data.path == "/x/y"
    assert cfg.data.limit == 2**53 + 1


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.bach_size=3", "unknown config key 'train.bach_size'; valid keys in [train]:"),
        ("trian.steps=3", "unknown config section 'trian'; valid sections: model, train"),
        ("train.batch_size=abc", "'train.batch_size' expects an integer, got 'abc'"),
        ("train.batch_size=2.5", "'train.batch_size' expects an integer"),
        ("train.ema=maybe", "'train.ema' expects true/false"),
        ("train.lr_G=fast", "'train.lr_G' expects a number"),
        ("model.G_attn=a,b", "'model.G_attn' expects an integer"),
        ("model.G_attn=[14", "'model.G_attn' expects a list of int written a,b or [a,b], got"),
        ("model.D_attn=14]]", "'model.D_attn' expects a list of int written a,b or [a,b]"),
        ("train.betas_G=[0.1,,0.2", "'train.betas_G' expects a list of float written a,b"),
        ("eval.metrics=fid,", "'eval.metrics' expects a list of str written a,b or [a,b]"),
        ("steps=3", "must look like section.key"),
        ("train.steps", "must look like section.key=value"),
        ("train.accumulate=0", "'train.accumulate' must be > 0, got 0"),
        ("train.log_every=0", "'train.log_every' must be > 0"),
        ("train.lr_D=-1e-4", "'train.lr_D' must be in (0, 1]"),
        ("train.lr_G=2", "'train.lr_G' must be in (0, 1], got 2.0 (a learning rate)"),
        ("model.bn_eps=2", "'model.bn_eps' must be in (0, 1], got 2.0"),
        ("train.adam_eps=0", "'train.adam_eps' must be in (0, 1]"),
        ("train.r1_gamma=1e39", "'train.r1_gamma' must be a number within float32's range"),
        ("train.ema_decay=1.5", "'train.ema_decay' must be in [0, 1]"),
        ("train.betas_G=0.5,1.0", "'train.betas_G' must be in [0, 1)"),
        ("train.ema_start=-1", "'train.ema_start' must be >= 0"),
        ("train.lr_G=inf", "'train.lr_G' must be a finite number, got inf"),
        ("train.lr_D=nan", "'train.lr_D' must be a finite number, got nan"),
        ("train.betas_G=0.5", "'train.betas_G' expects 2 numbers (Adam's beta1, beta2)"),
        ("train.betas_D=[0.5,0.9,0.1]", "'train.betas_D' expects 2 numbers"),
        ("train.betas_D=0.5,-0.1", "'train.betas_D' must be in [0, 1)"),
        ("model.dim_z=1e9", "'model.dim_z' must be in 1..1024, got 1000000000"),
        ("model.dim_z=0", "'model.dim_z' must be in 1..1024"),
        ("model.G_ch=100000", "'model.G_ch' must be in 1..512, got 100000 (a channel multiplier)"),
        ("model.D_ch=0", "'model.D_ch' must be in 1..512"),
        ("model.n_classes=100000000", "'model.n_classes' must be in 1..100,000"),
        ("model.shared_dim=5000", "'model.shared_dim' must be in 0..1024"),
        ("model.sn_eps=inf", "'model.sn_eps' must be a finite number, got inf"),
        ("model.sn_eps=0", "'model.sn_eps' must be in (0, 1]"),
        ("model.sn_eps=1e39", "'model.sn_eps' must be a number within float32's range"),
        ("eval.truncation=inf", "'eval.truncation' must be a finite number, got inf"),
        ("eval.truncation=0.05", "'eval.truncation' must be 0 (off) or in [0.1, 4.0], got 0.05"),
        ("eval.truncation=4.5", "'eval.truncation' must be 0 (off) or in [0.1, 4.0]"),
        ("eval.truncation=-1", "'eval.truncation' must be 0 (off) or in [0.1, 4.0]"),
        ("model.channels=2", "'model.channels' must be 1 or 3, got 2 (1 = grey, 3 = RGB)"),
        ("model.channels=4", "'model.channels' must be 1 or 3"),
        ("train.steps=1e30", "'train.steps' must be in 1..10**9"),
        # digits past float's 2**53 are echoed as given, not rounded
        ("train.steps=99999999999999999999999", "got 99999999999999999999999 (a number of"),
        ("train.steps=inf", "'train.steps' expects an integer, got 'inf'"),
        ("train.seed=-1", "'train.seed' must be in 0..2**32-1, got -1"),
        ("model.G_attn=1e30", "'model.G_attn' must fit in 64 bits"),
    ],
)
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override",
    ["eval.truncation=0", "eval.truncation=0.1", "eval.truncation=4", "model.channels=1",
     "model.dim_z=1024", "train.steps=1e9", "train.seed=4294967295", "model.G_ch=512",
     "model.n_classes=100000", "model.shared_dim=1024"],
)  # fmt: skip
def test_values_at_the_bounds_are_accepted(override):
    validate(apply_overrides(Config(), [override]))


@pytest.mark.parametrize("overrides", ["train.steps=2", ("train.steps", 2), 3])
def test_overrides_must_be_a_list_of_strings(overrides):
    """A plain string used to be iterated character by character ("override 't' ...")."""
    with pytest.raises(
        ConfigError, match="overrides must be a list of 'section.key=value' strings"
    ):
        load_preset(DEFAULT_PRESET, overrides)
    with pytest.raises(ConfigError, match="overrides must be a list"):
        apply_overrides(Config(), overrides)


def test_overrides_may_be_a_tuple():
    assert load_preset(DEFAULT_PRESET, ("train.steps=2",)).train.steps == 2


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), ["train.bach_size=3"])
    assert "batch_size" in str(err.value)


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError) as err:
        load_preset("no-such-preset")
    msg = str(err.value)
    assert "unknown preset 'no-such-preset'" in msg and DEFAULT_PRESET in msg


def test_toml_round_trip(tmp_path):
    cfg = load_preset(DEFAULT_PRESET, ["train.lr_D=3e-4", "model.D_attn=8"])
    save_toml(cfg, tmp_path / "config.toml")
    assert load_toml(tmp_path / "config.toml") == cfg


def test_numpy_numbers_set_in_code_are_saved_as_plain_numbers(tmp_path):
    """``validate`` accepts any integer/real, so a NumPy scalar set in code must still reach
    the run's config.toml (and JSON) as a plain number."""
    cfg = load_preset(DEFAULT_PRESET)
    cfg.train.steps, cfg.train.lr_G = np.int64(7), np.float32(0.5)
    cfg.train.betas_D = [np.float64(0.0), 0.9]
    save_toml(validate(cfg), tmp_path / "config.toml")
    back = load_toml(tmp_path / "config.toml")
    assert back.train.steps == 7 and back.train.lr_G == 0.5 and back.train.betas_D == [0.0, 0.9]
    assert type(to_dict(cfg)["train"]["betas_D"][0]) is float
    json.dumps(to_dict(cfg))


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[train]\nbatch_size = 'big'\n")
    with pytest.raises(ConfigError) as err:
        load_toml(path)
    assert str(path) in str(err.value) and "train.batch_size" in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")


def test_non_utf8_toml_names_the_file(tmp_path):
    path = tmp_path / "config.toml"
    save_toml(Config(), path)
    with path.open("ab") as f:
        f.write(b"\xff\xfe")
    with pytest.raises(ConfigError) as err:
        load_toml(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not UTF-8 text") and "expected UTF-8 TOML" in msg
    assert "\n" not in msg


def test_unreadable_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}: cannot read the config file"):
        load_toml(tmp_path)  # a directory


@pytest.mark.parametrize(
    "text, fragment",
    [("", "empty; expected a gankit config ([model], [train], ...)"),
     ("[train]\nlr_G = inf\n", "'train.lr_G' must be a finite number, got inf"),
     ("[model]\nsn_eps = nan\n", "'model.sn_eps' must be a finite number, got nan"),
     ("[train]\nbetas_G = 0.5\n", "'train.betas_G' expects a list of float, got 0.5")],
)  # fmt: skip
def test_bad_toml_values_name_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_toml(path)
    assert str(err.value).startswith(f"{path}: ") and fragment in str(err.value)


def test_from_dict_rejects_non_table():
    with pytest.raises(ConfigError, match="must be a \\[section\\] table"):
        from_dict({"train": 3})
