"""The Python API given bad arguments the way a researcher might: each is refused before any
work with a ParameterError (or ConfigError) naming the argument or key, never a traceback
from inside torch or a silently wrong result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_fixtures import single_thread, tiny_cfg, tiny_data

import gankit
from gankit.analysis import invert, nearest, saliency_maps
from gankit.config import ConfigError
from gankit.errors import ParameterError
from gankit.models import build

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run at step 2 whose data (60 images) is enough for an offline metric."""
    tmp = tmp_path_factory.mktemp("api")
    cfg = tiny_cfg(tiny_data(tmp / "d.npz", n=60), "train.steps=2")
    with single_thread():
        return gankit.train(cfg, tmp / "r", quiet=True)


@pytest.fixture(scope="module")
def nets():
    """An untrained tiny G and D in eval mode (32x32 grey, 3 classes)."""
    G, D = build(tiny_cfg(Path("unused.npz")).model)
    return G.eval().requires_grad_(False), D.eval()


def _images(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(n, 1, 32, 32), torch.arange(n) % 3


# -- load_preset / validate / train -------------------------------------------------------------


def test_load_preset_refuses_a_name_that_is_not_a_string():
    # str(Path("mnist-sagan")) was reported as the unknown preset 'mnist-sagan'
    with pytest.raises(ParameterError, match="^name: expected a preset name") as err:
        gankit.load_preset(Path("mnist-sagan"))
    assert err.value.param == "name" and "got PosixPath" in str(err.value)


def test_train_refuses_a_preset_name_for_the_config(tmp_path):
    with pytest.raises(ParameterError, match="^cfg: expected a gankit.Config") as err:
        gankit.train("mnist-sagan", tmp_path / "r", quiet=True)
    assert err.value.param == "cfg" and "got str" in str(err.value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("n", 5, "'eval.n' must be in 10..1,000,000 when eval.every > 0, got 5"),
        ("n", 2_000_000, "'eval.n' must be in 10..1,000,000 when eval.every > 0"),
        ("batch_size", 2_000_000, "'eval.batch_size' must be in 1..1,000,000"),
    ],
)
def test_validate_refuses_eval_counts_the_eval_hook_would_refuse_mid_run(
    tmp_path, key, value, expected
):
    """(train used to start, write the run and fail at the first evaluation)"""
    cfg = tiny_cfg(tmp_path / "d.npz", "eval.every=1", "eval.metrics=swd")
    setattr(cfg.eval, key, value)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        gankit.validate(cfg)
    with pytest.raises(ConfigError, match=f"eval.{key}"):
        gankit.train(cfg, tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()
    cfg.eval.every = 0  # not used without evaluations: a stored config stays valid
    gankit.validate(cfg)


# -- resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, None])  # the run is at step 2 (None: its train.steps)
def test_resume_names_steps_when_the_run_is_already_there(run, steps):
    with pytest.raises(ParameterError, match="^steps: .* is already at step 2; expected") as err:
        gankit.resume(run, steps=steps, quiet=True)
    assert err.value.param == "steps"


@pytest.mark.parametrize("device", ["gpu", "cuda:0", torch.device("cpu")])
def test_resume_names_device_for_a_device_it_cannot_store(run, device):
    with pytest.raises(ParameterError, match="^device: expected 'cpu', 'cuda', 'auto' or None"):
        gankit.resume(run, steps=3, device=device, quiet=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resume_names_device_for_cuda_without_cuda(run):
    with pytest.raises(ParameterError, match="^device: cuda requested but no CUDA device"):
        gankit.resume(run, steps=3, device="cuda", quiet=True)


# -- generate / evaluate --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"batch_size": 0}, "batch_size"), ({"truncation": float("nan")}, "truncation")],
)
def test_generate_checks_its_arguments_when_called(nets, kwargs, param):
    """Not at the first batch, wherever the iterator happens to be consumed."""
    G, _ = nets
    with pytest.raises(ParameterError) as err:
        gankit.generate(G, torch.arange(3), **kwargs)
    assert err.value.param == param
    with pytest.raises(ParameterError, match="^labels: expected a 1-D integer tensor"):
        gankit.generate(G, [0, 1, 2])


def test_evaluate_reads_metrics_given_as_an_iterator(run):
    # the names were consumed by the check and nothing was evaluated: {"eval": {}}
    result = gankit.evaluate(run, iter(["swd"]), n=10, quiet=True)
    assert set(result["eval"]) == {"swd", "swd_real_heldout"}


@pytest.mark.parametrize("metrics", [5, ["swd", 1]])
def test_evaluate_names_metrics_that_are_not_a_list_of_names(run, metrics):
    with pytest.raises(ParameterError, match="^metrics: expected a list of metric names") as err:
        gankit.evaluate(run, metrics, n=10, quiet=True)
    assert err.value.param == "metrics"


# -- documented analysis helpers ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["path", "G"])
def test_saliency_maps_names_D_when_given_a_path_or_the_generator(run, nets, which):
    """(an AttributeError on 'training', or a shape error from inside torch)"""
    D = str(run) if which == "path" else nets[0]
    with pytest.raises(ParameterError, match="^D: expected a discriminator") as err:
        saliency_maps(D, *_images())
    assert err.value.param == "D"


@pytest.mark.parametrize("which", ["path", "D"])
def test_invert_names_G_when_given_a_path_or_the_discriminator(run, nets, which):
    G = str(run) if which == "path" else nets[1]
    with pytest.raises(ParameterError, match="^G: expected a generator") as err:
        invert(G, *_images(), steps=1, restarts=1)
    assert err.value.param == "G"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"features": 3, "feature_weight": 1.0}, "features"), ({"quiet": "no"}, "quiet")],
)
def test_invert_checks_features_and_quiet(nets, kwargs, param):
    """(``features=3`` failed calling it deep inside; ``quiet="no"`` counted as true)"""
    with pytest.raises(ParameterError) as err:
        invert(nets[0], *_images(), steps=1, restarts=1, **kwargs)
    assert err.value.param == param


def test_nearest_names_queries_without_rows():
    """(``torch.cat`` of no distance matrices failed inside)"""
    with pytest.raises(ParameterError, match="^queries: expected at least one query row"):
        nearest(torch.zeros(0, 4), torch.zeros(5, 4))
