"""Benchmark: what building a teacher cache costs, against one plain inference pass of the teacher.

Over the Fashion-MNIST training split (55k images, the recipe's loader: batch 128, crop and flip),
in one process and interleaved round by round: the shipped teacher (ResNet-20) in eval mode under
``torch.inference_mode`` over the normalised images at each batch size and layout (the plain pass),
and ``TeacherCache`` built for 1 and 2 augmentation draws. Each figure is the best of the rounds
(the machine may be shared; the best round is the least disturbed). The requirement: building
costs no more than one plain pass per draw at the fastest batch size.

    python benchmarks/teacher_cache_cost.py                     # about 5 minutes on 2 quiet cores
    python benchmarks/teacher_cache_cost.py --quick             # seconds: 4096 images, one round
    python benchmarks/teacher_cache_cost.py --images 8192 --rounds 4   # a busy machine: more, shorter rounds

Prints the JSON record and writes it to ``benchmarks/results/teacher_cache_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from torchslim import data, zoo
from torchslim.core.io import atomic_write_json
from torchslim.distill.cache import TeacherCache

OUT = Path(__file__).resolve().parent / "results" / "teacher_cache_cost.json"


def plain_pass(teacher: torch.nn.Module, images: torch.Tensor, batch_size: int, channels_last: bool) -> float:
    """Seconds for the teacher over ``images`` (N, C, H, W, normalised) ``batch_size`` at a time."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    teacher.to(memory_format=layout)
    x = images.contiguous(memory_format=layout)
    began = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            teacher(x[i:i + batch_size])
    seconds = time.perf_counter() - began
    teacher.to(memory_format=torch.contiguous_format)
    return seconds


def cache_build(teacher: torch.nn.Module, loader: Any, draws: int) -> float:
    """Seconds to build a memory cache of ``draws`` augmentation draws over ``loader``."""
    began = time.perf_counter()
    TeacherCache(teacher, loader, draws=draws, log=lambda message: None)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4096 training images and one round")
    parser.add_argument("--images", type=int, default=None, help="the first N training images of each draw "
                        "(default: all 55k)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: the recipe's 2)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is kept")
    parser.add_argument("--batch-sizes", default="128,256,512,1024", help="plain-pass batch sizes")
    parser.add_argument("--root", default=None, help="a directory holding the Fashion-MNIST IDX files")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = data.load("fashion-mnist", root=args.root, batch_size=128)
    train = bundle.train
    if args.quick or args.images:
        train.sampler.n = 4096 if args.quick else args.images  # the first N of each draw's order
    rounds = 1 if args.quick else args.rounds
    dataset = train.dataset
    n = train.sampler.n
    images = (dataset.images[:n].float() / dataset.scale - dataset.mean) / dataset.std
    teacher, _ = zoo.load("fashion-mnist-teacher")
    teacher.eval()
    cases: dict[str, Any] = {f"plain b{b}{' channels-last' if cl else ''}": (plain_pass, teacher, images, b, cl)
                             for b in map(int, args.batch_sizes.split(",")) for cl in (False, True)}
    cases.update({f"cache {d} draw{'s' * (d > 1)}": (cache_build, teacher, train, d) for d in (1, 2)})
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (fn, *call) in cases.items():
            times[name].append(fn(*call))
            print(f"{name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    best = {name: min(seconds) for name, seconds in times.items()}
    plain = {name: s for name, s in best.items() if name.startswith("plain")}
    fastest = min(plain, key=plain.get)
    per_draw = {name: best[name] / d for name, d in (("cache 1 draw", 1), ("cache 2 draws", 2))}
    record = {
        "command": " ".join(["python", "benchmarks/teacher_cache_cost.py", *(argv or sys.argv[1:])]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
        "threads": args.threads, "images": n, "training_batch_size": train.sampler.batch_size,
        "rounds": rounds, "seconds_best": best, "seconds_all": times,
        "fastest_plain_pass": {"case": fastest, "seconds": plain[fastest]},
        "cache_seconds_per_draw": per_draw,
        "cache_per_draw_over_plain_pass": {name: s / plain[fastest] for name, s in per_draw.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, record)
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
