"""Typed config: presets, overrides, TOML round trip and one-line errors."""

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
        ],
    )
    assert cfg.train.batch_size == 32 and isinstance(cfg.train.batch_size, int)
    assert cfg.train.lr_G == pytest.approx(1e-3)
    assert cfg.train.ema is False
    assert cfg.model.G_attn == [64, 32]
    assert cfg.train.betas_D == [0.5, 0.9]
    assert cfg.train.steps == 1000
    assert cfg.data.path == "/x/y"


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
        ("steps=3", "must look like section.key"),
        ("train.steps", "must look like section.key=value"),
        ("train.accumulate=0", "'train.accumulate' must be > 0, got 0"),
        ("train.log_every=0", "'train.log_every' must be > 0"),
        ("train.lr_D=-1e-4", "'train.lr_D' must be > 0"),
        ("train.ema_decay=1.5", "'train.ema_decay' must be in [0, 1]"),
        ("train.betas_G=0.5,1.0", "'train.betas_G' must be in [0, 1)"),
        ("train.ema_start=-1", "'train.ema_start' must be >= 0"),
    ],
)
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


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


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[train]\nbatch_size = 'big'\n")
    with pytest.raises(ConfigError) as err:
        load_toml(path)
    assert str(path) in str(err.value) and "train.batch_size" in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")


def test_from_dict_rejects_non_table():
    with pytest.raises(ConfigError, match="must be a \\[section\\] table"):
        from_dict({"train": 3})
