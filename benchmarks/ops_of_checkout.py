"""ATen ops of one training iteration of *another* gankit checkout (the "before" figure).

``gankit bench`` reports ``ops_per_iter`` only for the code it ships with. To compare with an
older release, this script imports gankit from that checkout's ``src`` and counts one
iteration (after one warm-up) with this tree's :class:`OpCounter`, loaded by file path so that
the two packages do not mix. Prints one JSON line. Usage::

    git worktree add /tmp/old <commit>
    python benchmarks/ops_of_checkout.py /tmp/old/src [--preset biggan-cifar] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

OPCOUNT = Path(__file__).resolve().parents[1] / "src" / "gankit" / "training" / "opcount.py"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="the other checkout's src folder")
    p.add_argument("--preset", default="biggan-cifar")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    spec = importlib.util.spec_from_file_location("opcount_here", OPCOUNT)
    opcount = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(opcount)
    sys.path.insert(0, str(Path(args.src).resolve()))
    from gankit.bench import synthetic_dataset
    from gankit.config import apply_overrides, load_preset
    from gankit.training.loop import Trainer

    cfg = apply_overrides(load_preset(args.preset), ["train.device=cpu", *args.overrides])
    t = cfg.train
    per_iter = t.batch_size * t.n_D * t.accumulate
    trainer = Trainer(cfg, None, dataset=synthetic_dataset(cfg, 2 * per_iter), quiet=True)
    trainer.train_iteration()  # warm-up: lazy state (optimizer moments) is created here
    with opcount.OpCounter() as counter:
        trainer.train_iteration()
    print(json.dumps({
        "src": args.src, "preset": args.preset, "ops_per_iter": counter.total,
        "view_ops_per_iter": counter.views, "host_syncs_per_iter": counter.host_syncs,
        "ops_top": counter.top(8),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
