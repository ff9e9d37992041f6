"""The run directory (gankit.run): paths, create/open, checkpoints, metrics.jsonl, loading."""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import shutil
import subprocess
import sys
from unittest import mock

import pytest
import torch
from safetensors.torch import save_file
from training_fixtures import TINY

from gankit import checkpoint
from gankit.checkpoint import (
    CheckpointReadError,
    load_meta,
    load_state,
    load_weights,
    save_checkpoint,
    step_dir_name,
)
from gankit.cli import main
from gankit.config import Config, apply_overrides, save_toml
from gankit.errors import GankitError, ParameterError
from gankit.models import build
from gankit.run import RunDir, find_checkpoint, load_discriminator, load_generator
from gankit.training import resume, train


@pytest.fixture()
def run(tmp_path) -> RunDir:
    cfg = apply_overrides(Config(), TINY)
    torch.manual_seed(0)
    G, D = build(cfg.model, init=False)
    G_ema = build(cfg.model, init=False)[0]
    weights = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict()}
    run = RunDir.create(tmp_path / "run")
    save_toml(cfg, run.config_file)
    for step in (2, 4):
        save_checkpoint(run.checkpoints, step_dir_name(step), weights, {"step": step}, cfg)
    save_checkpoint(run.checkpoints, "best", weights, {"step": 2}, cfg)
    run.nets = G, D, G_ema  # for the tests below
    return run


def test_layout_paths(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.config_file == tmp_path / "r" / "config.toml"
    assert run.metrics_file.name == "metrics.jsonl" and run.tb.name == "tb"
    assert run.sample_grid(12) == tmp_path / "r" / "samples" / "step_00000012.png"
    assert run.plots == tmp_path / "r" / "plots" and not (tmp_path / "r").exists()


def test_checkpoints_latest_best_and_find(run):
    assert [c.name for c in run.list_checkpoints()] == ["step_00000002", "step_00000004"]
    assert run.latest_checkpoint().name == "step_00000004"
    assert run.best_checkpoint() == run.checkpoints / "best"
    assert find_checkpoint(run.path) == run.latest_checkpoint()
    assert find_checkpoint(run.checkpoints / "best") == run.checkpoints / "best"
    assert RunDir.of_checkpoint(run.latest_checkpoint()).path == run.path
    assert RunDir.of_checkpoint(run.path) is None


def test_create_refuses_a_run_with_checkpoints_and_open_needs_config(run, tmp_path):
    with pytest.raises(GankitError, match="already has checkpoints; continue it with `gankit"):
        RunDir.create(run.path)
    with pytest.raises(GankitError, match="not a run directory"):
        RunDir.open(tmp_path)
    assert RunDir.open(run.path).load_config().model.dim_z == 8


def test_metrics_append_and_read_skip_a_truncated_line(run):
    with pytest.raises(GankitError, match="no metrics.jsonl"):
        run.read_metrics()
    run.append_metrics({"step": 1, "loss_D": 0.5})
    run.append_metrics({"step": 2, "eval": {"fid": 3.0}})
    with open(run.metrics_file, "a") as f:
        f.write('{"step": 3, "lo')  # a writer killed mid-line
    assert run.read_metrics() == [{"step": 1, "loss_D": 0.5}, {"step": 2, "eval": {"fid": 3.0}}]
    assert json.loads(run.metrics_file.read_text().splitlines()[0])["step"] == 1
    run.append_metrics({"step": 3, "eval": {"fid": 2.0}})  # a line of its own, not glued on
    assert run.read_metrics()[2:] == [{"step": 3, "eval": {"fid": 2.0}}]
    with open(run.metrics_file, "ab") as f:
        f.write(b"\n\xa2\xff garbage \x80\n")  # bytes that are not UTF-8: skipped too
    assert len(run.read_metrics()) == 3


def test_an_empty_path_is_a_parameter_error(tmp_path, capsys):
    with pytest.raises(ParameterError, match="run_dir: expected a run or checkpoint directory"):
        RunDir("")
    assert main(["train", "--out", "", "--set", "train.steps=1"]) == 2
    err = capsys.readouterr().err
    assert err == "gankit: error: --out: expected a run directory path, got an empty path\n"


def test_load_generator_and_discriminator(run):
    G, D, G_ema = run.nets
    for loaded, ref in ((load_generator(run.path), G_ema), (load_discriminator(run.path), D)):
        assert not loaded.training and loaded.config.model.dim_z == 8
        assert not any(p.requires_grad for p in loaded.parameters())
        for (k, a), b in zip(loaded.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(a, b), k
    raw = load_generator(run.path, ema=False)
    assert all(
        torch.equal(a, b) for a, b in zip(raw.state_dict().values(), G.state_dict().values())
    )


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (lambda b: b[:1000], "invalid header length"),  # truncated inside the header
        (lambda b: b[: len(b) - 8], "incomplete metadata, file not fully covered"),
        (lambda b: b"", "empty file"),
        (lambda b: bytes(range(256)) * 4, "header"),  # garbage
    ],
)
def test_a_damaged_weight_file_is_one_line_naming_it(run, damage, cause, capsys):
    ckpt = run.latest_checkpoint()
    path = ckpt / "G_ema.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    expected = f"{path}: damaged or unreadable checkpoint file ("
    for load in (load_generator, lambda src: load_weights(find_checkpoint(src), "G_ema")):
        with pytest.raises(CheckpointReadError) as err:
            load(run.path)
        assert str(err.value).startswith(expected) and cause in str(err.value)
        assert "\n" not in str(err.value)
    assert main(["sample", str(run.path), "--n", "2", "--out", str(run.path / "x.png")]) == 2
    assert capsys.readouterr().err == f"gankit: error: {err.value}\n"
    load_generator(run.path, ema=False)  # the other files still load


def test_damaged_state_meta_and_config_of_a_checkpoint_name_the_file(run):
    ckpt = run.latest_checkpoint()
    state = ckpt / "state.pt"
    state.write_bytes(state.read_bytes()[:200])
    truncated = r"state\.pt: damaged or unreadable checkpoint file \(PytorchStreamReader failed"
    with pytest.raises(CheckpointReadError, match=truncated):
        load_state(ckpt)
    state.write_bytes(b"\x80\x02garbage" * 50)
    with pytest.raises(CheckpointReadError, match=r"not a weights-only torch file"):
        load_state(ckpt)
    state.write_bytes(b"")
    with pytest.raises(CheckpointReadError, match=r"state\.pt: .*\(empty file\)$"):
        load_state(ckpt)
    (ckpt / "meta.json").write_text('{"step": 4, "heal')
    with pytest.raises(
        CheckpointReadError, match=r"meta\.json: damaged or unreadable .*\(Unterminated"
    ):
        load_meta(ckpt)
    (ckpt / "meta.json").write_text("[4]")
    with pytest.raises(CheckpointReadError, match=r"\(expected a JSON object\)$"):
        load_meta(ckpt)
    (ckpt / "config.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(GankitError, match=rf"^{re.escape(str(ckpt))}/config\.toml: "):
        load_generator(ckpt)  # not UTF-8: ConfigError, or unreadable: CheckpointReadError


def test_an_unreadable_weight_file_says_permission_denied(run, monkeypatch):
    """safetensors reports EACCES as "No such file or directory"; the error gives the real
    cause (root reads any file, so there open() is made to refuse it as it would a user)."""
    path = run.latest_checkpoint() / "G_ema.safetensors"
    path.chmod(0)
    if os.geteuid() == 0:
        real_open = builtins.open

        def refuse(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        def load_file(file, device="cpu"):
            raise FileNotFoundError(f"No such file or directory: {file}")

        monkeypatch.setattr(builtins, "open", refuse)
        monkeypatch.setattr(checkpoint, "load_file", load_file)
    try:
        want = rf"^{re.escape(str(path))}: damaged or unreadable checkpoint file \("
        want += r"Permission denied\)$"
        with pytest.raises(CheckpointReadError, match=want):
            load_generator(run.path)
    finally:
        path.chmod(0o644)


def test_a_file_removed_while_read_is_a_file_not_found_error(run, monkeypatch):
    """A checkpoint pruned while it is read stays a FileNotFoundError (``gankit serve``
    answers 404 for it), and a one-line GankitError for the CLI."""
    ckpt = run.latest_checkpoint()
    real = checkpoint.load_file

    def pruned_meanwhile(file, device="cpu"):
        (ckpt / "G_ema.safetensors").unlink()
        return real(file, device=device)

    monkeypatch.setattr(checkpoint, "load_file", pruned_meanwhile)
    with pytest.raises(FileNotFoundError) as err:
        load_generator(ckpt)
    assert isinstance(err.value, GankitError) and "checkpoint file is missing" in str(err.value)


def test_weights_of_another_model_name_the_file_and_keys(run, capsys):
    """G weights of another architecture (here: attention at 16 px, twice the channels)
    copied into a checkpoint: one line naming the file and the first differing tensors."""
    other = apply_overrides(Config(), [*TINY, "model.G_attn=[16]", "model.G_ch=16"])
    G_other = build(other.model, init=False)[0]
    ckpt = run.latest_checkpoint()
    save_file(G_other.state_dict(), str(ckpt / "G_ema.safetensors"))
    path = ckpt / "G_ema.safetensors"
    with pytest.raises(GankitError) as err:
        load_generator(ckpt)
    msg = str(err.value)
    assert msg.startswith(
        f"{path}: weights do not match the model of {ckpt / 'config.toml'} (unexpected: attn."
    )
    assert "; shape: " in msg and "in the file, " in msg and "in the model" in msg
    assert "in all)" in msg and "\n" not in msg  # only the first few keys
    assert main(["sample", str(ckpt), "--n", "2", "--out", str(run.path / "x.png")]) == 2
    assert capsys.readouterr().err == f"gankit: error: {msg}\n"


def test_a_run_pruned_while_read_loads_its_new_latest(run, monkeypatch):
    """A training run prunes the latest checkpoint between listing and reading: loading the run
    takes the newest again (here the older one that is left), with ``G.checkpoint`` saying
    which; the config missing meanwhile is the same missing-file error."""
    latest = run.latest_checkpoint()
    real = checkpoint.load_file
    pruned = []

    def prune_once(file, device="cpu"):
        if not pruned:
            pruned.append(latest)
            shutil.rmtree(latest)
        return real(file, device=device)

    monkeypatch.setattr(checkpoint, "load_file", prune_once)
    G = load_generator(run.path)
    assert pruned == [latest] and G.checkpoint == run.checkpoints / "step_00000002"
    assert load_discriminator(run.path).checkpoint == G.checkpoint
    (G.checkpoint / "config.toml").unlink()
    with pytest.raises(checkpoint.CheckpointFileMissing, match="checkpoint file is missing"):
        checkpoint.load_config(G.checkpoint)


def test_one_writer_per_run_and_no_stale_lock(run):
    """``train`` and ``resume`` refuse a run another process is writing, naming its pid (the
    lock is an flock on the directory, so a second open in this process conflicts too); a
    holder killed with SIGKILL leaves no lock behind."""
    with run.writer():
        with pytest.raises(
            GankitError, match=rf"being written by another gankit process \(pid {os.getpid()}\)"
        ):
            resume(run.path, steps=8, quiet=True)
        with pytest.raises(GankitError, match="being written by another gankit process"):
            train(apply_overrides(Config(), TINY), run.path, quiet=True)
    assert run.list_checkpoints()  # the refused train removed nothing
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from gankit.run import RunDir\n"
         "with RunDir(sys.argv[1]).writer(): print('held', flush=True); sys.stdin.read()",
         str(run.path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(GankitError, match=rf"\(pid {holder.pid}\)"), run.writer():
            pass
    finally:
        holder.kill()
        holder.wait()
    with run.writer():  # released by the kernel with the killed holder
        pass


HOLD = """import sys; from gankit.run import RunDir
with RunDir(sys.argv[1]).writer(): print('held', flush=True); sys.stdin.read()"""
CHECK = """import sys; from gankit.run import RunDir
with RunDir(sys.argv[1]).writer(enabled=False): print('not refused', flush=True)"""


def test_a_rank_that_does_not_write_refuses_a_run_another_job_writes(run, tmp_path):
    """A rank that takes no lock (not the main rank of a DDP job) refuses a run whose lock a
    process of another job holds, so it does not wait for a main rank that has already stopped;
    the main rank of its own job (same parent, or the same launcher variables) is no obstacle."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run.path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(GankitError, match=rf"being written by .* \(pid {holder.pid}\)"):
            with run.writer(enabled=False):  # this process: another parent, no such variables
                pass
        check = [sys.executable, "-c", CHECK, str(run.path)]
        runs = [  # siblings: one job whatever the variables; a grandchild: by the variables
            (check, env),
            (check, {**env, "MASTER_PORT": "29512"}),
            (["sh", "-c", '"$@"; exit $?', "sh", *check], env),  # not exec'd: sh is its parent
        ]
        for argv, job in runs:
            done = subprocess.run(argv, env=job, capture_output=True, text=True, timeout=120)
            assert done.stdout == "not refused\n", done.stderr[-500:]
        other = subprocess.run(
            ["sh", "-c", '"$@"; exit $?', "sh", *check], capture_output=True, text=True,
            env={**env, "MASTER_PORT": "29512"}, timeout=120,
        )  # fmt: skip
        assert "being written by another gankit process" in other.stderr
    finally:
        holder.kill()
        holder.wait()


def test_non_finite_weights_are_a_damaged_file(run):
    """Damage inside a weight file's data (its header intact; safetensors has no checksum) that
    makes values NaN/Inf: one line naming the file and the tensors, never black samples."""
    ckpt = run.latest_checkpoint()
    path = ckpt / "G_ema.safetensors"
    weights = load_weights(ckpt, "G_ema")
    name = next(k for k, t in weights.items() if t.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(path))
    with pytest.raises(CheckpointReadError) as err:
        load_generator(ckpt)
    assert str(err.value) == (
        f"{path}: damaged or unreadable checkpoint file (non-finite values in {name})"
    )


def test_a_checkpoint_of_another_model_in_a_run_is_refused_by_readers(run):
    """A checkpoint copied in from another run (its own config.toml and weights agree, so only
    the run's config.toml tells): reading the run names the differing keys; the checkpoint
    passed by itself loads with its own config."""
    other = apply_overrides(Config(), [*TINY, "model.G_ch=16"])
    G, D = build(other.model, init=False)
    weights = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G.state_dict()}
    foreign = save_checkpoint(run.checkpoints, step_dir_name(6), weights, {"step": 6}, other)
    for load in (load_generator, load_discriminator):
        with pytest.raises(GankitError) as err:
            load(run.path)
        assert str(err.value) == (
            f"{foreign}: its model differs from the run's {run.config_file} (model.G_ch); a "
            "checkpoint of another run? pass the checkpoint directory itself to use it"
        )
    assert load_generator(foreign).config.model.G_ch == 16


def test_a_run_config_cut_short_is_named_as_such_by_readers(run):
    """A run ``config.toml`` that lost a model key reads as the default value, so the
    checkpoint's model differs: readers name the missing key, not another run's checkpoint."""
    text = run.config_file.read_text()
    run.config_file.write_text(re.sub(r"(?m)^G_ch = 8\n", "", text))
    latest = run.latest_checkpoint()
    with pytest.raises(GankitError) as err:
        load_generator(run.path)
    assert str(err.value) == (
        f"{run.config_file}: no model.G_ch (cut short?); restore it, e.g. from "
        f"{latest / 'config.toml'}, and change settings by editing their values"
    )


def test_readers_warn_about_an_incomplete_newer_checkpoint(run, capsys):
    """A newer step folder that lost a file (writers rename only complete ones into place, so
    it was damaged) is skipped with one warning line naming it, not silently."""
    (run.latest_checkpoint() / "G_ema.safetensors").unlink()
    assert find_checkpoint(run.path).name == "step_00000002"
    assert capsys.readouterr().err == (
        "gankit: warning: 1 newer checkpoint(s) are incomplete (newest: step_00000004, no "
        "G_ema.safetensors); using step_00000002\n"
    )


def test_a_checkpoint_completed_during_the_listing_is_not_called_incomplete(run, capsys):
    """Training renames a new complete checkpoint into place between the two listings of
    find_checkpoint: it is newer than the latest found, but not incomplete: no warning."""
    older = run.checkpoints / "step_00000002"
    with mock.patch.object(RunDir, "latest_checkpoint", return_value=older):
        assert find_checkpoint(run.path) == older
    assert capsys.readouterr().err == ""
