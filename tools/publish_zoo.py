"""Copy a trained checkpoint into the shipped zoo and write its model card.

usage: python tools/publish_zoo.py RUN_DIR ZOO_NAME "REPRODUCE COMMAND"

Copies RUN_DIR/model.safetensors and model.json to src/torchslim/zoo/ZOO_NAME/, writes
MODEL_CARD.md from the recorded metadata, and prints the SHA-256 to record in
src/torchslim/zoo/__init__.py (loading checks it).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from torchslim.core.io import atomic_write_text
from torchslim.core.tensors import sha256_file
from torchslim.measure import count_macs, count_parameters
from torchslim.measure.system import machine_info
from torchslim.models.checkpoint import load_model

ZOO = Path(__file__).resolve().parents[1] / "src" / "torchslim" / "zoo"


def card(name: str, meta: dict, command: str, params: int, macs: int, sha: str, size: int) -> str:
    hist, fit = meta["history"], meta["fit"]
    epochs = hist["epochs"]
    info = machine_info()
    rows = "\n".join(
        f"| {e['epoch']} | {e['lr']:.4g} | {e['train_loss']:.4f} | {e.get('train_accuracy', float('nan')):.2f} "
        f"| {e.get('val_accuracy', float('nan')):.2f} | {e['seconds']:.0f} |" for e in epochs)
    return f"""# {name}

{meta['model']['name']} ({params:,} parameters, {macs / 1e6:.1f} M MACs per 28x28 image) trained on
Fashion-MNIST ({meta['data']['kwargs'].get('val_size', 0)} training images held out for validation).

| | |
|---|---|
| test accuracy (10,000 images) | **{hist['test']['accuracy']:.2f}%** |
| validation accuracy | {meta['metrics']['val']['accuracy']:.2f}% |
| training wall time | {hist['seconds'] / 60:.1f} min ({len(epochs)} epochs, {fit.get('threads')} threads) |
| seed | {fit['seed']} |
| optimizer | {fit['optimizer']} (Nesterov momentum 0.9), peak lr {fit['lr']}, {fit['schedule']} schedule, weight decay {fit['weight_decay']} |
| label smoothing | {fit['label_smoothing']} (none: smoothing is known to make a worse teacher) |
| augmentation | random crop (2-pixel padding) + horizontal flip |
| weights | `model.safetensors`, {size:,} bytes, SHA-256 `{sha}` |
| machine | {info['cpu']} ({info['logical_cores']} cores), torch {info['versions']['torch']} |

Reproduce (from the repository root, after `make setup`):

```
{command}
```

Per-epoch record (wall-clock seconds include whatever else the machine ran at the time):

| epoch | lr | train loss | train acc % | val acc % | seconds |
|---|---|---|---|---|---|
{rows}
"""


def main(argv: list[str]) -> int:
    run, name, command = Path(argv[0]), argv[1], argv[2]
    model, meta = load_model(run)
    target = ZOO / name
    target.mkdir(parents=True, exist_ok=True)
    for f in ("model.safetensors", "model.json"):
        shutil.copy2(run / f, target / f)
    sha = sha256_file(target / "model.safetensors")
    example = __import__("torch").zeros(1, *[meta["model"]["in_channels"], 28, 28])
    text = card(name, meta, command, count_parameters(model), count_macs(model, example), sha,
                (target / "model.safetensors").stat().st_size)
    atomic_write_text(target / "MODEL_CARD.md", text)
    print(json.dumps({"name": name, "sha256": sha}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
