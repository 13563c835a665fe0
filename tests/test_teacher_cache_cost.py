"""Teacher cache cost: each training image goes through the teacher once per recorded draw, in
chunks of whole training batches; the replay serves exactly the images the logits were computed
on; a distillation run records the cache's seconds and its total beside its training time."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from torchslim import data, models
from torchslim.distill import cache as cache_module
from torchslim.distill.cache import TeacherCache
from torchslim.distill.config import DistillConfig
from torchslim.distill.run import DistillHistory, distill
from torchslim.pipeline.steps.training import Distill
from torchslim.train.batch import as_batch

BATCH, TRAIN = 8, 96  # 12 training batches of 8 (drop_last)


class Recording(nn.Module):
    """A real teacher that keeps a copy of every input it is called with."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.model(x)


def augmented_bundle() -> data.DataBundle:
    return data.load("synthetic", num_classes=4, shape=(1, 8, 8), train_size=TRAIN, val_size=0, test_size=16,
                     eval_batch_size=16, batch_size=BATCH, augment=True, seed=3)


def teacher(seed: int = 1) -> Recording:
    torch.manual_seed(seed)
    return Recording(models.create("cnn-tiny", num_classes=4))


def replayed(loader: Any, epoch: int) -> list[dict[str, Any]]:
    loader.sampler.set_epoch(epoch)
    return [as_batch(raw) for raw in loader]


@pytest.mark.parametrize("chunk", [8, 24, 256])  # one batch, three batches, all twelve per call
def test_teacher_runs_once_per_draw_per_chunk_of_whole_batches(monkeypatch, chunk):
    monkeypatch.setattr(cache_module, "CHUNK", chunk)
    bundle, recording = augmented_bundle(), teacher()
    TeacherCache(recording, bundle.train, draws=2, log=lambda message: None)
    batches = len(bundle.train)
    per_call = math.ceil(chunk / BATCH)
    assert len(recording.inputs) == 2 * math.ceil(batches / per_call)  # once per chunk per draw, no more
    assert sum(len(x) for x in recording.inputs) == 2 * batches * BATCH  # each image once per draw


def test_replay_serves_the_images_the_logits_were_computed_on(monkeypatch):
    monkeypatch.setattr(cache_module, "CHUNK", 24)
    bundle, recording = augmented_bundle(), teacher()
    cache = TeacherCache(recording, bundle.train, draws=2, log=lambda message: None)
    seen = torch.cat(recording.inputs)
    per_draw = len(bundle.train) * BATCH
    assert recording.training and all(p.is_contiguous() for p in recording.parameters())  # handed back as it came
    recording.eval()  # the teacher's logits are eval-mode logits
    cache.attach()
    try:
        for epoch in (0, 1, 2, 3):  # epochs 2 and 3 replay draws 0 and 1
            batches = replayed(bundle.train, epoch)
            images = torch.cat([b["x"] for b in batches])
            draw = epoch % 2
            assert torch.equal(images, seen[draw * per_draw:(draw + 1) * per_draw])  # the very pixels
            for batch in batches:
                with torch.no_grad():
                    live = recording.model(batch["x"])
                assert torch.allclose(cache.lookup(epoch, batch["index"]), live, atol=1e-5)
        assert not torch.equal(replayed(bundle.train, 0)[0]["x"], replayed(bundle.train, 1)[0]["x"])
    finally:
        cache.detach()


def test_library_run_records_cache_and_total_beside_training():
    bundle = augmented_bundle()
    torch.manual_seed(0)
    history = distill(models.create("cnn-tiny", num_classes=4), teacher().model, bundle, 1, cache="memory",
                      cache_draws=1, lr=0.05, threads=1, progress=False, log=lambda message: None)
    assert isinstance(history, DistillHistory)
    assert history.cache_seconds > 0
    assert history.total_seconds >= history.cache_seconds + history.seconds > history.cache_seconds
    assert {"cache_seconds", "total_seconds", "seconds"} <= set(history.to_dict())


class StepRun:
    """What the distill step reads of a run: the recipe's seed and threads, the data, a working
    folder, a teacher source and fresh registered models."""

    def __init__(self, bundle: data.DataBundle, work: Path, source: nn.Module) -> None:
        self.recipe = SimpleNamespace(seed=0, threads=1)
        self.where, self.work, self.progress, self.quick, self.on_epoch_end = "strategy[0] step 0", work, False, False, None
        self.data, self.source, self.messages = bundle, source, []

    def log(self, message: str) -> None:
        self.messages.append(message)

    def load_model(self, source: str) -> tuple[nn.Module, dict]:
        assert source == "teacher"
        return self.source, {}

    def create_model(self, name: str, kwargs: dict[str, Any]) -> nn.Module:
        return models.create(name, num_classes=self.data.num_classes, **kwargs)


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_distill_step_metrics_show_the_total_beside_training(tmp_path, cache):
    run = StepRun(augmented_bundle(), tmp_path, teacher().model)
    params = DistillConfig.build("distill", {"student": "cnn-tiny", "epochs": 1, "lr": 0.05, "cache": cache})
    metrics = Distill().run(run, params, None).metrics
    assert metrics["total_seconds"] >= metrics["cache_seconds"] + metrics["train_seconds"]
    assert metrics["train_seconds"] > 0
    assert (metrics["cache_seconds"] > 0) == (cache == "memory")



def test_an_in_memory_cache_is_built_once_per_process_for_the_same_teacher_and_data():
    bundle, recording = augmented_bundle(), teacher()
    first = TeacherCache(recording, bundle.train, draws=2, log=lambda message: None)
    calls = len(recording.inputs)
    again = TeacherCache(recording, bundle.train, draws=2, log=lambda message: None)
    assert len(recording.inputs) == calls  # the second (a later trial or strategy) reuses the logits
    assert torch.equal(again.values, first.values)
    other = TeacherCache(teacher(seed=2), bundle.train, draws=2, log=lambda message: None)
    assert not torch.equal(other.values, first.values)  # another teacher: its own logits
    one_draw = TeacherCache(recording, bundle.train, draws=1, log=lambda message: None)
    assert len(recording.inputs) > calls and one_draw.values.shape[0] == 1  # other draws: built anew


def test_benchmark_times_each_build_from_scratch(bench_scripts, one_thread, write_fmnist, tmp_path, monkeypatch):
    """benchmarks/teacher_cache_cost.py on 5600 tiny IDX images (5000 go to validation), two rounds: the second round's builds
    run the teacher again (a reused in-memory cache would make them free), and the section says
    whether the requirement holds."""
    import numpy as np
    import teacher_cache_cost as bench

    rng = np.random.default_rng(0)
    root = write_fmnist(tmp_path / "idx", images=rng.integers(0, 256, (5600, 28, 28), dtype=np.uint8),
                        labels=(np.arange(5600) % 10).astype(np.uint8))
    calls = []
    real = bench.TeacherCache

    def counting(teacher, loader, **kwargs):
        calls.append(len(cache_module._SHARED))  # what the build found kept before it
        return real(teacher, loader, **kwargs)

    monkeypatch.setattr(bench, "TeacherCache", counting)
    out, md = tmp_path / "r.json", tmp_path / "RESULTS.md"
    record = bench.main(["--root", str(root), "--images", "256", "--rounds", "2", "--threads", "1",
                         "--batch-sizes", "64,128", "--out", str(out), "--results-md", str(md)])
    assert calls == [0, 0, 0, 0]  # four builds (1 and 2 draws, two rounds), none found a kept cache
    assert record["images"] == 256 and len(record["seconds_all"]["cache 1 draw"]) == 2
    assert min(record["seconds_all"]["cache 1 draw"]) > 0
    assert set(record["seconds_best"]) == {"plain b64", "plain b64 channels-last", "plain b128",
                                           "plain b128 channels-last", "cache 1 draw", "cache 2 draws"}
    text = md.read_text()
    assert "<!-- teacher_cache_cost:start -->" in text and "| cache 2 draws |" in text and "the requirement" in text


@pytest.mark.parametrize("argv, needle", [(["--images", "0"], "--images must be at least 1, got 0"),
                                          (["--batch-sizes", "64,x"], "expected comma-separated whole numbers"),
                                          (["--batch-sizes", "0"], "--batch-sizes must all be at least 1")])
def test_benchmark_refuses_bad_arguments(bench_scripts, argv, needle, capsys):
    import teacher_cache_cost as bench

    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err
