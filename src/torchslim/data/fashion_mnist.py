"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 70k 28x28 greyscale images of 10 clothing classes.

Files are read from an explicit ``root``, else from ``$TORCHSLIM_DATA/fashion-mnist``: a location
the user gave is the only place looked (missing files are an error naming it, never replaced by
another copy). Without one they are looked for in ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist``) and ``~/.cache/torchslim/fashion-mnist``. Where none has them and ``download`` is on, they are fetched
from the dataset's official mirror into the cache and verified by SHA-256 of their decompressed
content (which is what matters; distributions recompress the .gz files).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from torchslim.core.errors import CorruptFileError, DataNotFoundError
from torchslim.core.io import atomic_write_bytes
from torchslim.data.base import ArrayImageDataset, Augment, DataBundle, make_loader, split_train_val
from torchslim.data.idx import decompress, parse_idx, read_idx_bytes
from torchslim.data.registry import dataset, given_location, refuse_incomplete

MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# SHA-256 of each file's decompressed IDX content, and its expected size in bytes.
FILES = {
    "train-images-idx3-ubyte": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    "train-labels-idx1-ubyte": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    "t10k-images-idx3-ubyte": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    "t10k-labels-idx1-ubyte": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Mean and std of the training pixels scaled to [0, 1].
MEAN, STD = (0.2860,), (0.3530,)


def search_paths(root: str | Path | None = None) -> list[Path]:
    """Every directory looked in, in order."""
    paths = [Path(root)] if root else []
    if os.environ.get("TORCHSLIM_DATA"):
        paths.append(Path(os.environ["TORCHSLIM_DATA"]) / "fashion-mnist")
    paths.append(Path("/usr/share/datasets/fashion-mnist"))
    paths.append(cache_dir())
    return paths


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torchslim" / "fashion-mnist"


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def locate(root: str | Path | None = None, download: bool = True) -> dict[str, Path]:
    """Paths of the four IDX files: from the location the user gave (``root``, else
    ``$TORCHSLIM_DATA/fashion-mnist``) and nowhere else; without one, from the first of the system
    copy and the cache that has all of them, downloading into the cache when allowed.

    Raises:
        DataNotFoundError: a given location lacks files (the location and the missing files named),
            or no directory has them and downloading was off or failed (every place looked listed).
    """
    given = given_location(root, "fashion-mnist")
    if given is not None:
        found = {stem: _find(given[0], stem) for stem in FILES}
        if not all(found.values()):
            refuse_incomplete("Fashion-MNIST", given[0], given[1], [f"{s}[.gz]" for s, p in found.items() if p is None],
                              "put the four IDX files there (Debian's 'dataset-fashion-mnist' installs them in "
                              "/usr/share/datasets/fashion-mnist), or drop the location.")
        return found  # type: ignore[return-value]
    looked = search_paths()
    for directory in looked:
        found = {stem: _find(directory, stem) for stem in FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
    problem = ""
    if download:
        try:
            return fetch(cache_dir())
        except (urllib.error.URLError, OSError) as exc:
            problem = f" Downloading from {MIRROR} failed: {exc}."
    raise DataNotFoundError(
        "Fashion-MNIST files (" + ", ".join(f"{s}[.gz]" for s in FILES) + ") were not found in: "
        + "; ".join(str(p) for p in looked) + "." + problem
        + " Install Debian's package 'dataset-fashion-mnist', put the files in one of those "
        "directories (or pass --data-root / set TORCHSLIM_DATA), or allow the download."
    )


def fetch(directory: Path, mirror: str = MIRROR, timeout: float = 30.0) -> dict[str, Path]:
    """Download the four files into ``directory``, verifying each before it is kept."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem in FILES:
        target = directory / (stem + ".gz")
        if not target.is_file():
            with urllib.request.urlopen(mirror + stem + ".gz", timeout=timeout) as response:
                payload = response.read()
            verify(stem, decompress(payload, str(target)), str(target))
            atomic_write_bytes(target, payload)
        paths[stem] = target
    return paths


def verify(stem: str, content: bytes, source: str) -> None:
    """Check decompressed content against the published file's SHA-256."""
    digest = hashlib.sha256(content).hexdigest()
    if digest != FILES[stem][0]:
        raise CorruptFileError(
            f"{source}: SHA-256 {digest} does not match the official {stem} "
            f"({FILES[stem][0]}); delete the file and fetch it again."
        )


def load_arrays(paths: dict[str, Path], check: bool = False) -> dict[str, np.ndarray]:
    """Parse the four files; ``check`` also verifies their checksums (slower, for downloads)."""
    arrays = {}
    for stem, path in paths.items():
        content = read_idx_bytes(path)
        if check:
            verify(stem, content, str(path))
        arrays[stem] = parse_idx(content, str(path))
    for split in ("train", "t10k"):
        images, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
            raise CorruptFileError(
                f"{paths[f'{split}-images-idx3-ubyte']}: images {images.shape} and labels "
                f"{labels.shape} do not pair up (expected (N, 28, 28) and (N,))."
            )
        bad = labels[(labels < 0) | (labels >= len(CLASSES))]
        if bad.size:
            raise CorruptFileError(
                f"{paths[f'{split}-labels-idx1-ubyte']}: label {bad[0].item()} is out of "
                f"range 0..{len(CLASSES) - 1}."
            )
    return arrays


@dataset("fashion-mnist", task="image")
def fashion_mnist(
    batch_size: int = 128,
    *,
    root: str | Path | None = None,
    val_size: int = 5000,
    augment: bool = True,
    seed: int = 0,
    download: bool = True,
    eval_batch_size: int = 1000,
) -> DataBundle:
    """Fashion-MNIST loaders: a seeded validation split held out of the 60k training images.

    Args:
        batch_size: training batch size.
        root: a directory holding the IDX files, looked in first.
        val_size: training images held out for validation (0: no validation split).
        augment: random crop (2-pixel padding) and horizontal flip on the training split.
        seed: seeds the validation split, shuffling and augmentation.
        download: fetch the files from the official mirror when no directory has them.
    """
    paths = locate(root, download=download)
    arrays = load_arrays(paths)
    images = torch.from_numpy(arrays["train-images-idx3-ubyte"]).unsqueeze(1)
    labels = torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long()
    train_idx, val_idx = split_train_val(len(images), val_size, seed)
    aug = Augment(crop_padding=2, hflip=True) if augment else Augment()
    train = ArrayImageDataset(images[train_idx], labels[train_idx], MEAN, STD, aug)
    test = ArrayImageDataset(
        torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).unsqueeze(1),
        torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long(), MEAN, STD,
    )
    val = ArrayImageDataset(images[val_idx], labels[val_idx], MEAN, STD) if val_size else None
    return DataBundle(
        name="fashion-mnist",
        train=make_loader(train, batch_size, train=True, seed=seed),
        val=make_loader(val, eval_batch_size, train=False) if val is not None else None,
        test=make_loader(test, eval_batch_size, train=False),
        num_classes=10,
        input_shape=(1, 28, 28),
        class_names=list(CLASSES),
        info={"root": str(paths["train-images-idx3-ubyte"].parent), "val_size": val_size,
              "augment": aug.__dict__, "seed": seed},
    )
