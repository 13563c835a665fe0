"""Train cnn-tiny on synthetic data; used by the resume and DDP tests as a separate process.

usage: train_synthetic.py OUT_DIR EPOCHS [--resume]
Prints "epoch N done" after each epoch (after its checkpoint is written) and saves the final
weights to OUT_DIR/final-rank{R}.safetensors and the history to OUT_DIR/history-rank{R}.json.
"""

import json
import os
import sys
from pathlib import Path

import torch

from torchslim import data, models
from torchslim.core.tensors import save_tensors
from torchslim.train import fit

out, epochs, resume = Path(sys.argv[1]), int(sys.argv[2]), "--resume" in sys.argv
torch.set_num_threads(1)
rank = int(os.environ.get("RANK", "0"))
bundle = data.load("synthetic", batch_size=16, train_size=768, noise=2.0, augment=True, seed=3)
torch.manual_seed(0)  # a fresh process is randomly seeded
model = models.create("cnn-tiny", num_classes=4)
history = fit(model, bundle, epochs, lr=0.05, seed=7, checkpoint_dir=out / "ckpt" if rank == 0 else None,
              resume=resume, progress=False,
              on_epoch_end=lambda e, r: print(f"epoch {e + 1} done", flush=True))
save_tensors(out / f"final-rank{rank}.safetensors", model.state_dict())
(out / f"history-rank{rank}.json").write_text(json.dumps(history.to_dict()))
