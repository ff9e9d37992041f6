"""ResNet archs at in-between resolutions (any multiple of 8 from 32 to 256) and non-square
data brought to them (centre crop of the shorter side)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from training_fixtures import tiny_cfg, tiny_data

from gankit.config import ConfigError, ModelConfig
from gankit.data.arrays import read_npz, to_dataset
from gankit.models import build, sample_z
from gankit.models.biggan import BIGGAN_TABLES
from gankit.models.resnet import spec_for
from gankit.models.sngan import SNGAN_TABLES
from gankit.training.loop import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TABLES = {"biggan": BIGGAN_TABLES, "sagan": BIGGAN_TABLES, "sngan": SNGAN_TABLES}
# resolution → (table it borrows, G blocks, G bottom width), written out from the rule
EXPECTED = {48: (32, 3, 6), 96: (64, 4, 6), 160: (128, 5, 5), 72: (32, 3, 9), 200: (32, 3, 25)}


def small(arch: str, resolution: int, **kw) -> ModelConfig:
    base = dict(arch=arch, resolution=resolution, channels=3, n_classes=5, dim_z=16, G_ch=2,
                D_ch=2, init="default")  # fmt: skip
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("res", [48, 96, 160, 72, 200])
@pytest.mark.parametrize("arch", sorted(TABLES))
def test_in_between_resolutions_forward(arch, res):
    table, n_blocks, bottom = EXPECTED[res]
    spec = TABLES[arch][table]
    assert spec_for(TABLES[arch], res) is spec
    G, D = build(small(arch, res))
    assert (len(G.blocks), G.bottom_width) == (n_blocks, bottom)
    assert bottom * 2**n_blocks == res and bottom >= 4
    # the borrowed table's channel multipliers, block by block
    assert [b.conv2.out_channels for b in G.blocks] == [2 * m for m in spec.g_widths[1:]]
    assert [b.conv2.out_channels for b in D.blocks] == [2 * m for m in spec.d_widths]
    z, y = sample_z(2, 16), torch.tensor([0, 4])
    with torch.no_grad():
        x = G(z, y)
        logits = D(x, y)
    assert x.shape == (2, 3, res, res)
    assert logits.shape == (2,) and torch.isfinite(logits).all()


def test_attention_resolutions_at_48_are_checked():
    G, D = build(small("sagan", 48, G_attn=[24], D_attn=[24]))
    assert sum(not isinstance(a, torch.nn.Identity) for a in G.attn) == 1
    assert sum(not isinstance(a, torch.nn.Identity) for a in D.attn) == 1
    with pytest.raises(ConfigError, match=r"model.G_attn.*\[16\].*\[12, 24, 48\]"):
        build(small("sagan", 48, G_attn=[16]))


@pytest.mark.parametrize("res", [24, 36, 260])
def test_unsupported_resolution_names_the_valid_set(res):
    with pytest.raises(ConfigError, match=r"model.resolution.*32, 40, \.\.\., 256") as err:
        build(small("biggan", res))
    assert "\n" not in str(err.value)


def test_one_training_iteration_at_48(tmp_path):
    torch.manual_seed(0)
    data = tiny_data(tmp_path / "d.npz", n=8)  # 32×32 images, fitted to 48×48
    cfg = tiny_cfg(data, "model.resolution=48", "model.G_ch=2", "model.D_ch=2")
    trainer = Trainer(cfg, quiet=True)
    before = [p.detach().clone() for p in trainer.G.parameters()]
    losses = trainer.train_iteration()
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters()))
    assert trainer.dataset.x.shape[1:] == (1, 48, 48)


def test_non_square_data_is_centre_cropped_then_resized(tmp_path):
    """A 60×90 image at 48: the centred 60×60 square (columns 15..75) resampled bilinearly in
    one step (PIL's box: pixels next to the square feed the filter's support)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 60, 90, 3), dtype=np.uint8)
    np.savez(tmp_path / "wide.npz", x=x, y=np.array([0, 1]))
    ds = to_dataset(read_npz(tmp_path / "wide.npz"), tmp_path / "wide.npz", 48, 3)
    for img, got in zip(x, ds.x):
        pil = Image.fromarray(img)
        box = (15, 0, 75, 60)
        want = np.asarray(pil.resize((48, 48), Image.Resampling.BILINEAR, box=box))
        assert np.array_equal(got, want.transpose(2, 0, 1))
    # a crop: columns far outside the square do not matter
    x[:, :, :10] = x[:, :, -10:] = 0
    np.savez(tmp_path / "wide2.npz", x=x, y=np.array([0, 1]))
    again = to_dataset(read_npz(tmp_path / "wide2.npz"), tmp_path / "wide2.npz", 48, 3)
    assert np.array_equal(again.x, ds.x)
