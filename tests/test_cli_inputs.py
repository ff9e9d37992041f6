"""Bad flags of `gankit sample`, `eval`, `analyze` and `inspect`: one line naming the flag, exit
status 2, before anything is loaded (a missing run shows it: its error would come first
otherwise)."""

from __future__ import annotations

import pytest

from gankit.cli import main
from gankit.cli.common import check_truncation_flag
from gankit.errors import ParameterError

TRUNCATION = "--truncation: expected 0 (off) or a number in [0.1, 4.0], got"


@pytest.mark.parametrize("value", [0.0, 0.1, 2.0, 4.0])
def test_truncation_flag_takes_the_config_range(value):
    assert check_truncation_flag(value) == value


@pytest.mark.parametrize("value", [0.05, 4.5, -2.0, float("nan"), float("inf")])
def test_truncation_flag_refuses_what_the_config_refuses(value):
    with pytest.raises(ParameterError, match=rf"^truncation: expected 0 \(off\) .*got {value}$"):
        check_truncation_flag(value)


COMMANDS = {  # each with a run that does not exist
    "sample": ["sample", "{tmp}/nope", "--out", "{tmp}/x.png"],
    "eval": ["eval", "{tmp}/nope", "--metrics", "swd", "--data", "{tmp}/X", "--n", "16"],
    "saliency": ["analyze", "saliency", "{tmp}/nope", "--out", "{tmp}", "--samples", "2"],
    "neighbours": ["analyze", "neighbours", "{tmp}/nope", "--out", "{tmp}"],
}
MANY = "expected a number of samples in 1..1000000, got"


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("sample", ["--truncation", "100"], f"{TRUNCATION} 100.0"),
        ("sample", ["--truncation", "0.05"], f"{TRUNCATION} 0.05"),
        ("eval", ["--truncation", "100"], f"{TRUNCATION} 100.0"),
        ("eval", ["--truncation", "-2"], f"{TRUNCATION} -2.0"),
        ("eval", ["--seed", "-1"], "--seed: expected an integer in 0..9223372036854775807, got -1"),
        ("eval", ["--n", "100000000000"], f"--n: {MANY} 100000000000"),
        ("saliency", ["--samples", "100000000"], f"--samples: {MANY} 100000000"),
        ("saliency", ["--truncation", "100"], f"{TRUNCATION} 100.0"),
        ("neighbours", ["--n", "100000000"], f"--n: {MANY} 100000000"),
        ("neighbours", ["--truncation", "0.05"], f"{TRUNCATION} 0.05"),
    ],
)
def test_bad_flags_are_refused_before_loading(tmp_path, capsys, command, args, message):
    argv = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    assert main([*argv, *args]) == 2
    assert capsys.readouterr().err == f"gankit: error: {message}\n"


def test_inspect_refuses_an_empty_out(tmp_path, capsys, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "loss_D": 1.0, "loss_G": 0.5}\n')
    monkeypatch.chdir(tmp_path)
    for out in ("", " "):
        assert main(["inspect", str(tmp_path / "run"), "--out", out]) == 2
        err = capsys.readouterr().err
        assert err == "gankit: error: --out: expected an output folder, got an empty path\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written here


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "--steps", "3", "--set", "train.steps=2"],
            "'train.steps=2' sets train.steps, as --steps does; give only one of them",
        ),
        (
            ["train", "--skip-bad", "--set", "data.skip_bad=true"],
            "'data.skip_bad=true' sets data.skip_bad, as --skip-bad does",
        ),
        (  # --device applies with its default too
            ["bench", "--set", "train.device=cpu"],
            "'train.device=cpu' sets train.device, as --device does",
        ),
        (  # so does measure's --data (default: the embedded digits)
            ["measure", "--measurement", "block_pixels", "--out", "m.npz", "--set", "data.path=x"],
            "'data.path=x' sets data.path, as --data does",
        ),
        (
            ["bench", "--batch-size", "4", "--set", "train.batch_size=2"],
            "'train.batch_size=2' sets train.batch_size, as --batch-size does",
        ),
    ],
)
def test_a_key_set_by_a_flag_and_by_set_is_refused(tmp_path, capsys, argv, message):
    """Which of the two should win is a guess: neither does."""
    out = ["--out", str(tmp_path / "run")] if argv[0] == "train" else []
    assert main([*argv, *out]) == 2
    assert capsys.readouterr().err.startswith(f"gankit: error: --set: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, name",
    [
        (["inspect", ""], "RUN_DIR"),
        (["resume", ""], "RUN_DIR"),
        (["serve", ""], "RUN_DIR"),
        (["sample", "", "--out", "{tmp}/x.png"], "SOURCE"),
        (["eval", "", "--metrics", "swd", "--n", "16"], "SOURCE"),
        (["analyze", "saliency", "", "--out", "{tmp}", "--images"], "SOURCE"),
        (["analyze", "reconstruct", "", "--out", "{tmp}"], "SOURCE"),
        (["analyze", "neighbours", "", "--out", "{tmp}"], "SOURCE"),
    ],
)
def test_an_empty_positional_is_named_as_written(tmp_path, capsys, args, name):
    """Errors name a positional argument as the usage line writes it, not as a flag that does
    not exist (``--run-dir``, ``--source``)."""
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gankit: error: {name}: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "{tmp}/bad\nname", "--out", "{tmp}/x.png"],
        ["inspect", "{tmp}/bad\r\nname"],
        ["inspect", "{tmp}/bad\u2028name"],
    ],
)
def test_a_line_break_in_a_path_keeps_the_error_on_one_line(tmp_path, capsys, args):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.endswith("\n") and err.startswith("gankit: error: ")
    assert any(f"bad{escape}name" in err for escape in ("\\n", "\\r\\n", "\\u2028"))
