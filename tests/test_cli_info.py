"""`gankit info`: parameter counts of the anchor presets and one-line errors (exit status 2)."""

import contextlib
import io
import json

import pytest

from gankit.cli import main


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def info_128() -> dict:
    """biggan-128 is built once per test session (a few seconds on CPU)."""
    rc, out, _ = run(["info", "--preset", "biggan-128", "--json"])
    assert rc == 0
    return json.loads(out)


def test_biggan_128_counts_match_anchor(info_128):
    assert abs(info_128["params_G"] / 70_433_988 - 1) < 0.01
    assert abs(info_128["params_D"] / 87_982_370 - 1) < 0.01
    assert (info_128["params_G"], info_128["params_D"]) == (70_433_988, 87_982_370)  # exact
    assert info_128["config"]["model"]["hier"] is True
    assert info_128["config"]["train"]["lr_D"] == 4e-4


def test_biggan_cifar_text_output_and_override():
    rc, out, _ = run(["info", "--preset", "biggan-cifar"])
    assert rc == 0
    assert "params_G: 4,304,387" in out and "params_D: 4,207,361" in out
    assert "preset: biggan-cifar" in out and "n_D = 4" in out
    rc, out, _ = run(["info", "--preset", "biggan-cifar", "--json", "--set", "model.n_classes=1"])
    info = json.loads(out)
    # only the per-class CBN tables (12 layers x 2 x 256) and D's embedding (256) shrink
    assert info["params_G"] == 4_304_387 - 9 * 2 * 256 * 6
    assert info["params_D"] == 4_207_361 - 9 * 256


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["--preset", "nope"], ["unknown preset 'nope'", "biggan-128", "biggan-cifar"]),
        (
            ["--preset", "biggan-cifar", "--set", "model.bogus=1"],
            ["model.bogus", "G_ch", "shared_dim"],
        ),
        (
            ["--preset", "biggan-cifar", "--set", "model.G_ch=wide"],
            ["model.G_ch", "integer", "'wide'"],
        ),
        (
            ["--preset", "biggan-cifar", "--set", "model.arch=stylegan"],
            ["model.arch", "stylegan", "biggan, dcgan, sagan"],
        ),
        (
            ["--preset", "biggan-cifar", "--set", "model.resolution=100"],
            ["model.resolution", "every multiple of 8"],
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, needles):
    rc, out, err = run(["info", *argv])
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gankit: error:")
    for needle in needles:
        assert needle in lines[0]
