"""Benchmark: all-MiniLM-L6-v2 made smaller by layer dropping, head pruning, distillation and INT8.

Every model is compared with its teacher on held-out WordNet glosses (senses never seen in
training): mean cosine of the embeddings, overlap of each sentence's 10 nearest neighbours, and
Spearman of all pairwise similarities (on the first ``spearman_size`` sentences). Candidates:

* the teacher (6 layers) — torch, and ONNX Runtime INT8;
* 3- and 2-layer students initialised from the teacher layers that ``choose_layers`` measured to
  agree best, as initialised and after distillation (cached teacher embeddings, ``embed-cos``);
* the teacher with half its attention heads and FFN units pruned by importance, as pruned and
  after distillation from the unpruned teacher;

each also exported to ONNX and quantized to dynamic INT8 (per-channel). Throughput in sentences per
second at batch 64 and 1, one thread, every candidate timed in the same interleaved rounds.

    python benchmarks/distill_minilm.py            # ~35 min on 2 idle cores (see estimate)
    python benchmarks/distill_minilm.py --quick    # a smoke test: tiny random teacher, seconds

Models, ONNX files and the teacher cache go to ``--work`` (default ``runs/bench/distill_minilm``);
the JSON is rewritten after every stage, and a run started again with the same settings continues
from the first unfinished stage (``--restart`` discards it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import (
    REPO,
    display_path,
    machine_line,
    new_parser,
    parse,
    previous_record,
    record_header,
    report_written,
    settings_from,
    torch_threads,
    write_section,
)

from torchslim import data
from torchslim.core.io import atomic_write_json
from torchslim.measure import machine_info

NAME = "distill_minilm"
TEACHER = "teacher"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of a run, recorded in the JSON (a changed knob starts the run afresh)."""

    max_length: int = 64
    # Measured (1 thread, busy machine): 20k sentences x 1 epoch at lr 5e-4 gave the 3-layer student
    # cosine 0.930 / Spearman 0.881; 2 epochs give it the steps the Spearman target needs.
    train_size: int = 20_000  # sentences of the training split used for distillation
    epochs: int = 2  # the first (headline) student's
    # the other students' (the 2-layer and the head-pruned teacher): their comparison with each other
    # is at equal training; one epoch keeps the whole benchmark near 35 min on 2 idle cores
    other_epochs: int = 1
    eval_size: int = 2000  # held-out sentences for cosine and 10-NN overlap
    spearman_size: int = 1000
    sample_size: int = 256  # validation sentences for the layer choice and head importance
    batch_size: int = 64
    lr: float = 5e-4
    students: tuple[int, ...] = (3, 2)
    prune_heads: float = 0.5
    prune_ffn: float = 0.5
    train_threads: int = 2
    timing_threads: int = 1
    timing_rounds: int = 3
    seed: int = 0
    losses: tuple[tuple[str, tuple, float], ...] = (("embed-cos", (), 1.0),)


FULL = Settings()
QUICK = Settings(train_size=256, eval_size=128, spearman_size=128, sample_size=32, batch_size=32,
                 train_threads=1, timing_rounds=1)
TARGETS = {"cosine": 0.93, "spearman": 0.90, "speedup": 1.8, "int8_speedup": 3.5, "int8_gap": 0.01}


def estimate_minutes(s: Settings) -> float:
    """Rough minutes on 2 idle cores: teacher cache + training + evaluation + exports + timing."""
    per_1k = {"cache": 5.0, 3: 22.0, 2: 15.0, "pruned": 28.0}  # seconds per 1,000 training sentences
    first, *others = s.students
    train = s.train_size / 1000 * (s.epochs * per_1k.get(first, 8.0 * first) + s.other_epochs * (
        sum(per_1k.get(k, 8.0 * k) for k in others) + per_1k["pruned"]))
    evaluation = 14 * s.eval_size / 1000 * 6.0
    return (s.train_size / 1000 * per_1k["cache"] + train + evaluation + 7 * 15 + s.timing_rounds * 70) / 60 + 1


# -- candidates ------------------------------------------------------------------------------------

def quick_teacher(work: Path):
    """A tiny random BERT with MiniLM's tokenizer: exercises every stage in seconds."""
    from transformers import BertConfig, BertModel

    from torchslim.text import load_tokenizer

    directory = work / "quick-teacher"
    if not (directory / "config.json").is_file():
        torch.manual_seed(0)
        tokenizer = load_tokenizer("minilm")
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=128)
        BertModel(config).save_pretrained(str(directory))
        tokenizer.hf.save_pretrained(str(directory))
    return str(directory)


def build_candidates(s: Settings, teacher, bundle, work: Path, result: dict, save) -> dict[str, Any]:
    """Every torch candidate: students made (and distilled) once, reloaded from ``work`` on resume."""
    from torchslim.text import (
        choose_layers,
        distill_encoder,
        layer_student,
        load_encoder,
        prune_encoder,
        save_encoder,
    )

    sample = bundle.val.dataset.ids[: s.sample_size]
    models = {TEACHER: teacher}
    inits = {}
    for k in s.students:
        if str(k) not in result["choices"]:
            began = time.perf_counter()
            choice = choose_layers(teacher, sample, k)
            result["choices"][str(k)] = {**choice.to_dict(), "seconds": time.perf_counter() - began}
            save()
            print(f"{k} layers: keep {choice.layers} (agreement {choice.score:.4f} before training; every other "
                  f"{choice.every_other[0]}: {choice.every_other[1]:.4f})")
        inits[f"{k}-layer"] = layer_student(teacher, result["choices"][str(k)]["layers"])
    inits["pruned"], result["pruning"] = prune_encoder(teacher, sample, heads=s.prune_heads, ffn=s.prune_ffn)
    save()
    losses = [(name, dict(options), weight) for name, options, weight in s.losses]
    for base, init in inits.items():
        models[f"{base} init"] = init
        name, directory = f"{base} distilled", work / "models" / f"{base}-distilled"
        if name in result["training"] and (directory / "torchslim.json").is_file():
            models[name] = load_encoder(directory)
            continue
        student = trainable_copy(init)
        epochs = s.epochs if base == f"{s.students[0]}-layer" else s.other_epochs
        history = distill_encoder(student, teacher, bundle.train, epochs=epochs, losses=losses, cache="disk",
                                  cache_dir=work / "cache", threads=s.train_threads, progress=False, seed=s.seed,
                                  lr=s.lr, log=print)
        save_encoder(student, directory, {"benchmark": NAME, "history": history.to_dict()})
        result["training"][name] = {"seconds": history.seconds, "epochs": history.epochs,
                                    "parameters": _params(student)}
        save()
        print(f"{name}: trained {history.seconds / 60:.1f} min, final loss {history.epochs[-1]['train_loss']:.4f}")
        models[name] = student
    return models


def trainable_copy(encoder):
    """A trainable copy of ``encoder`` (its layer choice or pruning kept, its own parameters)."""
    import copy

    return encoder.rewrap(copy.deepcopy(encoder.bert)).train()


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def deploy(models: dict[str, Any], work: Path, result: dict, save, example: torch.Tensor) -> dict[str, Any]:
    """ONNX Runtime INT8 of every candidate (exported once; files reused on resume)."""
    from torchslim.text import OrtEncoder, export_onnx, quantize_int8

    out = {}
    for name, model in models.items():
        stem = work / "onnx" / name.replace(" ", "-")
        fp32, int8 = stem.with_suffix(".onnx"), stem.with_suffix(".int8.onnx")
        if name not in result["exports"] or not int8.is_file():
            began = time.perf_counter()
            export_onnx(model, fp32, example)
            quantize_int8(fp32, int8)
            result["exports"][name] = {"seconds": time.perf_counter() - began, "fp32_bytes": fp32.stat().st_size,
                                       "int8_bytes": int8.stat().st_size}
            save()
        out[f"{name} · int8"] = OrtEncoder(int8, threads=1)
    return out


# -- measurements ----------------------------------------------------------------------------------

def measure_agreement(variants: dict[str, Any], ids: torch.Tensor, pad: int, s: Settings, result: dict,
                      save) -> None:
    from torchslim.text import agreement, embed

    torch.set_num_threads(s.train_threads)
    reference = embed(variants[TEACHER], ids, pad)
    for name, model in variants.items():
        if name in result["agreement"]:
            continue
        began = time.perf_counter()
        result["agreement"][name] = {**agreement(embed(model, ids, pad), reference, spearman_n=s.spearman_size),
                                     "seconds": time.perf_counter() - began}
        save()


def measure_speed(variants: dict[str, Any], ids: torch.Tensor, pad: int, s: Settings) -> dict[str, Any]:
    from torchslim.text import throughput

    runtimes = {n: "onnxruntime" if "int8" in n else "torch-eager" for n in variants}
    return throughput(variants, ids, pad, batch_sizes=(64, 1), threads=s.timing_threads, rounds=s.timing_rounds,
                      runtimes=runtimes, warmup=3, min_seconds=1.0, min_repeats=5, max_repeats=200)


# -- report ----------------------------------------------------------------------------------------

def summarise(result: dict) -> dict[str, dict]:
    speed, agree = result["speed"], result["agreement"]
    base64, base1 = (speed[TEACHER][f"b{b}"]["sentences_per_second"] for b in (64, 1))
    rows = {}
    for name, timing in speed.items():
        torch_name = name.replace(" · int8", "")
        rows[name] = {
            "runtime": timing["b64"]["runtime"], **{k: agree[name][k] for k in ("mean_cosine", "knn_overlap",
                                                                                 "pairwise_spearman")},
            "parameters": result["parameters"].get(torch_name),
            "bytes": result["exports"].get(torch_name, {}).get("int8_bytes" if "int8" in name else "fp32_bytes"),
            "b64": timing["b64"]["sentences_per_second"], "b1": timing["b1"]["sentences_per_second"],
            "b64_speedup": timing["b64"]["sentences_per_second"] / base64,
            "b1_speedup": timing["b1"]["sentences_per_second"] / base1,
            "spread": max(timing[b]["p90_ms"] / timing[b]["p10_ms"] for b in ("b64", "b1"))}
    return rows


def verdict(rows: dict[str, dict], s: Settings) -> dict[str, Any]:
    k = s.students[0]
    student, int8 = rows.get(f"{k}-layer distilled"), rows.get(f"{k}-layer distilled · int8")
    if student is None or int8 is None:
        return {"text": "The first student is missing: no verdict."}
    checks = {
        "cosine": student["mean_cosine"] >= TARGETS["cosine"],
        "spearman": student["pairwise_spearman"] >= TARGETS["spearman"],
        "speedup": student["b64_speedup"] >= TARGETS["speedup"],
        "int8_speedup": int8["b64_speedup"] >= TARGETS["int8_speedup"],
        "int8_gap": all(abs(int8[m] - student[m]) <= TARGETS["int8_gap"] for m in ("mean_cosine", "pairwise_spearman")),
    }

    def mark(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    lines = [
        f"- {k}-layer distilled student: mean cosine {student['mean_cosine']:.4f} (target ≥ {TARGETS['cosine']}: "
        f"{mark(checks['cosine'])}), pairwise Spearman {student['pairwise_spearman']:.4f} (≥ {TARGETS['spearman']}: "
        f"{mark(checks['spearman'])}), {student['b64_speedup']:.2f}× the teacher's torch throughput at batch 64 "
        f"(≥ {TARGETS['speedup']}×: {mark(checks['speedup'])}).",
        f"- Its INT8 ONNX model: {int8['b64_speedup']:.2f}× the FP32 torch teacher at batch 64 (≥ "
        f"{TARGETS['int8_speedup']}×: {mark(checks['int8_speedup'])}); mean cosine {int8['mean_cosine']:.4f} and "
        f"Spearman {int8['pairwise_spearman']:.4f}, within {TARGETS['int8_gap']} of the FP32 student: "
        f"{mark(checks['int8_gap'])}.",
    ]
    pruned = rows.get("pruned distilled")
    if pruned:
        closer = min((n for n in rows if n.endswith("layer distilled")),
                     key=lambda n: abs(rows[n]["b64"] - pruned["b64"]))
        other = rows[closer]
        lines.append(f"- Head pruning vs layer dropping: the pruned-and-distilled teacher runs at "
                     f"{pruned['b64_speedup']:.2f}× (batch 64) with mean cosine {pruned['mean_cosine']:.4f}; the "
                     f"layer-dropped student closest in speed, {closer}, at {other['b64_speedup']:.2f}× with "
                     f"{other['mean_cosine']:.4f}.")
    return {"checks": checks, "text": "\n".join(lines)}


def _num(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table_markdown(rows: dict[str, dict]) -> str:
    lines = ["| model | runtime | parameters | file | mean cosine | 10-NN overlap | pairwise Spearman "
             "| sent/s b64 (× teacher) | sent/s b1 (× teacher) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        size = "—" if r["bytes"] is None else f"{r['bytes'] / 1e6:.1f} MB"
        params = "—" if r["parameters"] is None else f"{r['parameters'] / 1e6:.2f} M"
        flag = " *" if r["spread"] > 1.5 else ""
        lines.append(f"| {name} | {r['runtime']} | {params} | {size} | {r['mean_cosine']:.4f} | "
                     f"{r['knn_overlap']:.3f} | {r['pairwise_spearman']:.4f} | {r['b64']:.0f} ({r['b64_speedup']:.2f}×) | "
                     f"{r['b1']:.0f} ({r['b1_speedup']:.2f}×){flag} |")
    return "\n".join(lines)


def render_section(result: dict, s: Settings) -> str:
    quick = " (`--quick`: a tiny random teacher, a smoke test, not a result)" if result["quick"] else ""
    choices = "; ".join(f"{k} layers → {c['layers']} (agreement before training {c['score']:.4f}; every other "
                        f"{c['every_other'][0]}: {c['every_other'][1]:.4f})" for k, c in result["choices"].items())
    training = ", ".join(f"{n} {t['seconds'] / 60:.1f} min" for n, t in result["training"].items())
    parts = [
        f"## Distilling and pruning all-MiniLM-L6-v2{quick}",
        f"`{result['command']}` — {result['date']}, {machine_line(result['machine'])}. JSON: `{result['json']}`.",
        f"Corpus: WordNet glosses, {result['data']['splits']['train']:,} training sentences, held out by word sense; "
        f"agreement with the teacher on {s.eval_size:,} held-out sentences (Spearman over the first "
        f"{s.spearman_size:,}: all their pairs), max length {s.max_length} tokens. Distillation: "
        f"{' + '.join(n for n, _, _ in s.losses)} on cached teacher embeddings, {s.epochs} epoch(s) for the {s.students[0]}-layer student and "
        f"{s.other_epochs} for the others, AdamW lr "
        f"{s.lr:g}, {s.train_threads} thread(s) ({training}). Layer choice, measured before training: {choices}. "
        f"Pruning: {s.prune_heads:.0%} of heads and {s.prune_ffn:.0%} of FFN units per layer, by contribution norm.",
        f"Throughput: sentences per second, {s.timing_threads} thread, {s.timing_rounds} interleaved round(s), "
        "a batch of 64 real held-out sentences padded to their longest, and the first of them alone; "
        "torch eager for torch models, ONNX Runtime for INT8.",
        table_markdown(result["summary"]),
        "* p90/p10 of a timing > 1.5: the machine was busy; do not trust that median.",
        result["verdict"]["text"],
    ]
    return "\n\n".join(parts) + "\n"


# -- the benchmark ---------------------------------------------------------------------------------

def run_benchmark(args: argparse.Namespace, s: Settings) -> int:
    from torchslim.text import load_encoder

    started = time.perf_counter()
    work = Path(args.work)
    if args.restart:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(s.train_threads)
    source = quick_teacher(work) if args.quick else "minilm"
    teacher = load_encoder(source, max_length=s.max_length)
    bundle = data.load("wordnet-glosses", batch_size=s.batch_size, root=args.wordnet_root, tokenizer=teacher.tokenizer,
                       train_size=s.train_size, test_size=s.eval_size, seed=s.seed)
    config = json.loads(json.dumps({"quick": args.quick, "teacher": source if not args.quick else "quick",
                                    "settings": dataclasses.asdict(s), "data": bundle.info["splits"]}))
    result = previous_record(args.out, config, args.restart) or {
        "choices": {}, "training": {}, "exports": {}, "agreement": {}}
    result.update({**record_header(NAME, args), "config": config, "machine": machine_info(), "data": bundle.info, "targets": TARGETS,
                   "estimate_minutes": estimate_minutes(s)})

    def save() -> None:
        atomic_write_json(args.out, result)

    if not args.quick:
        print(f"estimated time on 2 idle cores: ~{estimate_minutes(s):.0f} min (stages already in "
              f"{display_path(args.out)} are skipped)")
    save()
    models = build_candidates(s, teacher, bundle, work, result, save)
    result["parameters"] = {name: _params(m) for name, m in models.items()}
    ids = bundle.test.dataset.ids
    variants: dict[str, Any] = {}
    for name, model in models.items():
        variants[name] = model.eval()
    variants.update(deploy(models, work, result, save, ids[:4]))
    order = [n for name in models for n in (name, f"{name} · int8")]
    variants = {n: variants[n] for n in order}
    measure_agreement(variants, ids, teacher.pad_token_id, s, result, save)
    print("timing ...")
    result["speed"] = measure_speed(variants, ids, teacher.pad_token_id, s)
    result["summary"] = summarise(result)
    result["verdict"] = verdict(result["summary"], s)
    result["seconds"] = time.perf_counter() - started
    save()
    write_section(args.results_md, NAME, render_section(result, s))
    print(table_markdown(result["summary"]))
    print(result["verdict"]["text"])
    report_written(NAME, args.out, args.results_md)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__, "tiny random teacher and small data: a smoke test")
    parser.add_argument("--train-size", type=int, help=f"training sentences (default {FULL.train_size})")
    parser.add_argument("--epochs", type=int, help=f"distillation epochs of the first student (default {FULL.epochs})")
    parser.add_argument("--other-epochs", type=int,
                        help=f"distillation epochs of the other students (default {FULL.other_epochs})")
    parser.add_argument("--threads", type=int, help=f"threads for training and evaluation (default {FULL.train_threads})")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench" / NAME),
                        help="models, ONNX files and the teacher cache (default: %(default)s)")
    parser.add_argument("--wordnet-root", default=None, help="directory of WordNet's data.* files")
    parser.add_argument("--restart", action="store_true", help="discard the recorded stages and the work directory")
    return parse(parser, NAME, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = settings_from(args, QUICK, FULL, {"train_size": "train_size", "epochs": "epochs",
                                          "other_epochs": "other_epochs", "threads": "train_threads"})
    with torch_threads(None):  # each stage sets its own count
        return run_benchmark(args, s)


if __name__ == "__main__":
    sys.exit(main())
