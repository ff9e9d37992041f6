"""The README's "Python API" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    exec(compile(code, "README.md", "exec"), {})
    step, swd = capsys.readouterr().out.split()
    assert step == "3" and float(swd) > 0
    assert (tmp_path / "runs" / "api-demo" / "checkpoints" / "step_00000003").is_dir()


def test_public_api_names():
    import gankit

    assert gankit.__all__ == [
        "Config", "load_preset", "validate", "train", "resume", "load", "generate", "evaluate",
    ]  # fmt: skip
    for name in gankit.__all__:
        assert callable(getattr(gankit, name)), name
    with pytest.raises(AttributeError):
        gankit.nope  # noqa: B018
