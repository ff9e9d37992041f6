"""config.validate: declarative ranges, choices and cross-field rules, checked up front."""

from __future__ import annotations

import pytest

from gankit.cli import main
from gankit.config import (
    CHOICES,
    RULES,
    Config,
    ConfigError,
    ModelConfig,
    apply_overrides,
    from_dict,
    list_presets,
    load_preset,
    to_dict,
    validate,
)
from gankit.device import DEVICES
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
