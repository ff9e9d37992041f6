"""`gankit train` / `gankit resume` from the command line, and their one-line errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from training_fixtures import TINY, tiny_data

from gankit.cli import main
from gankit.config import Config, apply_overrides
from gankit.errors import ParameterError
from gankit.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _set(items):
    return [a for item in items for a in ("--set", item)]


def test_train_then_resume_cli(tmp_path, capsys):
    data = tiny_data(tmp_path / "d.npz")
    run = tmp_path / "r"
    args = ["train", "--data", str(data), "--out", str(run), "--steps", "2", "--quiet"]
    assert main(args + _set(t for t in TINY if not t.startswith("train.steps"))) == 0
    assert main(["resume", str(run), "--steps", "2", "--quiet"]) == 2
    assert "already at step 2" in capsys.readouterr().err
    assert main(["resume", str(run), "--steps", "3", "--quiet"]) == 0
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert (run / "checkpoints" / "step_00000003").is_dir()
    assert "steps = 3" in (run / "config.toml").read_text()


def test_unknown_config_key(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "train.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.bogus'" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_failed_start_leaves_no_new_run_dir(tmp_path, capsys):
    """Bad data found after the run directory was made: the directory that this call created
    goes again (no files were written), one that existed before stays."""
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an archive")
    for out, existed in ((tmp_path / "new" / "r", False), (tmp_path / "old", True)):
        if existed:
            out.mkdir()
        assert main(["train", "--out", str(out), "--data", str(bad), "--quiet"]) == 2
        assert "bad.npz: not a readable .npz file" in capsys.readouterr().err
        assert out.is_dir() == existed


def test_a_run_dir_inside_the_image_folder_is_refused(tmp_path, capsys, monkeypatch):
    """Its checkpoints, samples and logs would be read as images by the next run (a hidden
    run dir there is not read; a ``~`` in data.path counts as the shell would expand it)."""
    imgs = tmp_path / "imgs"
    (imgs / "a").mkdir(parents=True)
    Image.new("L", (8, 8)).save(imgs / "a" / "0.png")
    monkeypatch.setenv("HOME", str(tmp_path))
    for data, out in ((str(imgs), imgs), (str(imgs), imgs / "a" / "run"), ("~/imgs", imgs / "r")):
        assert main(["train", "--data", data, "--out", str(out)]) == 2
        assert capsys.readouterr().err == (  # (the CLI stores data.path absolute)
            f"gankit: error: --out: {out} is inside the image folder {imgs} (data.path), whose "
            "files are all read as images; choose a run directory outside it\n"
        )
    cfg = apply_overrides(Config(), ["data.path=~/imgs"])  # as the library is given it
    with pytest.raises(ParameterError, match=r"^out_dir: .* is inside the image folder ~/imgs"):
        train(cfg, imgs / "r", quiet=True)
    assert sorted(p.name for p in imgs.rglob("*")) == ["0.png", "a"]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("config.toml", '[tool]\nname = "mine"\n', "holds a config.toml that is not a gankit"),
        ("metrics.jsonl", '{"mine": 1}\n', "holds a metrics.jsonl but no config.toml"),
    ],
)
def test_another_tools_files_in_the_run_dir_are_left_alone(tmp_path, capsys, name, text, message):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / name).write_text(text)
    assert main(["train", "--out", str(tmp_path / "r"), "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "choose another run directory or remove that file" in err
    assert [p.name for p in (tmp_path / "r").iterdir()] == [name]
    assert (tmp_path / "r" / name).read_text() == text


def test_resume_missing_dir(tmp_path, capsys):
    assert main(["resume", str(tmp_path / "none")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_train_stores_absolute_data_path(tmp_path, monkeypatch):
    data = tiny_data(tmp_path / "d.npz")
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", "d.npz", "--out", "r", "--steps", "1", "--quiet"]
    assert main(args + _set(t for t in TINY if not t.startswith("train.steps"))) == 0
    assert f'path = "{data.resolve()}"' in (tmp_path / "r" / "config.toml").read_text()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["resume", str(tmp_path / "r"), "--steps", "2", "--quiet"]) == 0


def test_data_path_helper(tmp_path, monkeypatch):
    from gankit.cli.common import data_path as _data_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _data_path("x/y.npz") == str(tmp_path.resolve() / "x" / "y.npz")
    assert _data_path("~/d") == str((tmp_path / "home" / "d").resolve())
    assert _data_path("") == ""
