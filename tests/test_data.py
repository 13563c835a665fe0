"""Datasets: the Fashion-MNIST loader (search, checks, split, download), batches and synthetic data."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DEBIAN_DIR, N_TEST, N_TRAIN
from torchslim import data
from torchslim.core.errors import CorruptFileError, DataNotFoundError, TorchSlimError
from torchslim.data import fashion_mnist as fm
from torchslim.data.base import ArrayImageDataset, Augment, EpochBatchSampler, split_train_val
from torchslim.data.idx import write_idx

STEMS = list(fm.FILES)


def load(root, **kwargs):
    kwargs.setdefault("val_size", 8)
    kwargs.setdefault("download", False)
    return data.load("fashion-mnist", root=root, **kwargs)


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - fm.MEAN[0]) / fm.STD[0]


# --- where the files are looked for ---------------------------------------------------------------


def test_search_paths_order(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHSLIM_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fm.search_paths(tmp_path / "root") == [
        tmp_path / "root",
        tmp_path / "env" / "fashion-mnist",
        DEBIAN_DIR,
        tmp_path / "xdg" / "torchslim" / "fashion-mnist",
    ]
    monkeypatch.delenv("TORCHSLIM_DATA")
    assert fm.search_paths() == [DEBIAN_DIR, tmp_path / "xdg" / "torchslim" / "fashion-mnist"]


@pytest.mark.parametrize("xdg", [None, ""], ids=["unset", "empty"])
def test_cache_dir_falls_back_to_home(monkeypatch, tmp_path, xdg):
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert fm.cache_dir() == tmp_path / ".cache" / "torchslim" / "fashion-mnist"


def test_without_a_given_location_the_first_complete_directory_wins(places, write_fmnist, monkeypatch):
    monkeypatch.delenv("TORCHSLIM_DATA")
    for directory in (places.system, places.cache):
        write_fmnist(directory)
    found = fm.locate(None, download=False)
    assert {p.parent for p in found.values()} == {places.system} and set(found) == set(STEMS)
    for path in found.values():  # take the system copy away: the cache must win
        path.unlink()
    assert load(None).info["root"] == str(places.cache)


def test_a_given_location_is_the_only_place_looked(places, write_fmnist, tmp_path):
    root = write_fmnist(tmp_path / "root")
    for directory in (places.env, places.system):
        write_fmnist(directory)
    assert load(root).info["root"] == str(root)  # root= beats $TORCHSLIM_DATA
    assert load(None).info["root"] == str(places.env)  # $TORCHSLIM_DATA beats the system copy


@pytest.mark.parametrize("given", ["root", "env"])
def test_an_incomplete_given_location_is_refused_not_replaced(places, write_fmnist, tmp_path, given):
    root = write_fmnist(tmp_path / "root") if given == "root" else None
    directory = root or write_fmnist(places.env)
    (directory / "t10k-labels-idx1-ubyte").unlink()
    write_fmnist(places.system)  # a complete system copy must not stand in
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        load(root)
    assert str(directory) in str(info.value) and str(places.system) not in str(info.value)
    assert ("$TORCHSLIM_DATA" in str(info.value)) == (given == "env")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_raw_and_gz_files_load(places, write_fmnist, fmnist_arrays, tmp_path, compress):
    root = write_fmnist(tmp_path / "root", compress=compress)
    assert all(p.name.endswith(".gz") == compress for p in fm.locate(root, download=False).values())
    bundle = load(root)
    assert bundle.num_classes == 10 and bundle.input_shape == (1, 28, 28)
    assert bundle.class_names[0] == "T-shirt/top" and len(bundle.class_names) == 10
    test = bundle.test.dataset
    assert torch.equal(test.images[:, 0], torch.from_numpy(fmnist_arrays["t10k-images-idx3-ubyte"]))
    assert torch.equal(test.labels, torch.from_numpy(fmnist_arrays["t10k-labels-idx1-ubyte"]).long())


def test_missing_data_lists_every_place_looked(places, monkeypatch):
    monkeypatch.delenv("TORCHSLIM_DATA")
    with pytest.raises(DataNotFoundError) as info:
        load(None)
    message = str(info.value)
    for place in (places.system, places.cache):
        assert str(place) in message
    assert "dataset-fashion-mnist" in message and "train-images-idx3-ubyte[.gz]" in message
    assert isinstance(info.value, FileNotFoundError)


# --- content checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replacement", "culprit", "pattern"),
    [
        ({"labels": (np.arange(N_TRAIN) % 11).astype(np.uint8)}, "train-labels", "label 10 is out of range"),
        ({"labels": np.full(N_TRAIN, -1, dtype=np.int8)}, "train-labels", "label -1 is out of range"),
        ({"t10k-labels-idx1-ubyte": np.full(N_TEST, 200, dtype=np.uint8)}, "t10k-labels", "label 200"),
        ({"labels": np.zeros(N_TRAIN - 1, dtype=np.uint8)}, "train-images", "do not pair up"),
        ({"images": np.zeros((N_TRAIN, 28 * 28), dtype=np.uint8)}, "train-images", "do not pair up"),
        ({"images": np.zeros((N_TRAIN, 32, 32), dtype=np.uint8)}, "train-images", "do not pair up"),
    ],
    ids=["label-10", "label-negative", "test-label", "count-mismatch", "flat-images", "wrong-size"],
)
def test_bad_content_is_a_corrupt_file(places, write_fmnist, tmp_path, replacement, culprit, pattern):
    root = write_fmnist(tmp_path / "root", **replacement)
    with pytest.raises(CorruptFileError, match=pattern) as info:
        load(root)
    assert str(root / culprit) in str(info.value)


def test_check_verifies_checksums(places, write_fmnist, fmnist_arrays, tmp_path, monkeypatch):
    root = write_fmnist(tmp_path / "root")
    paths = fm.locate(root, download=False)
    with pytest.raises(CorruptFileError, match="SHA-256") as info:
        fm.load_arrays(paths, check=True)
    assert str(paths[STEMS[0]]) in str(info.value)
    monkeypatch.setattr(fm, "FILES", {stem: (hashlib.sha256(paths[stem].read_bytes()).hexdigest(), 0)
                                      for stem in STEMS})
    assert fm.load_arrays(paths, check=True).keys() == set(STEMS)


# --- split, normalisation, augmentation -----------------------------------------------------------


def image_ids(dataset: ArrayImageDataset) -> set[int]:
    return set(dataset.images[:, 0, 0, 0].tolist())  # conftest writes each image's index there


def test_validation_split_is_seeded_and_disjoint(places, write_fmnist, tmp_path):
    root = write_fmnist(tmp_path / "root")
    bundle = load(root, val_size=10, seed=3)
    train, val = image_ids(bundle.train.dataset), image_ids(bundle.val.dataset)
    assert len(train) == N_TRAIN - 10 and len(val) == 10
    assert train.isdisjoint(val) and train | val == set(range(N_TRAIN))
    assert image_ids(load(root, val_size=10, seed=3).val.dataset) == val
    assert image_ids(load(root, val_size=10, seed=4).val.dataset) != val
    assert load(root, val_size=0).val is None


def test_split_train_val_directly():
    train, val = split_train_val(100, 30, seed=1)
    assert len(train) == 70 and len(val) == 30
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    assert torch.equal(split_train_val(100, 30, seed=1)[1], val)
    for bad in (-1, 100, 101):
        with pytest.raises(TorchSlimError, match=f"got {bad}"):
            split_train_val(100, bad, seed=0)


def test_normalisation_applies_mean_and_std(places, write_fmnist, tmp_path):
    bundle = load(write_fmnist(tmp_path / "root"))
    for dataset in (bundle.val.dataset, bundle.test.dataset):
        x, y, index = dataset[list(range(len(dataset)))]
        assert x.dtype == torch.float32 and x.shape == (len(dataset), 1, 28, 28)
        assert torch.allclose(x, normalise(dataset.images), atol=1e-6)
        assert torch.equal(y, dataset.labels) and torch.equal(index, torch.arange(len(dataset)))
    assert bundle.example_batch(3).shape == (3, 1, 28, 28)


def test_train_batches_without_augmentation_are_the_normalised_images(places, write_fmnist, tmp_path):
    bundle = load(write_fmnist(tmp_path / "root"), augment=False, batch_size=8)
    seen = []
    for x, y, index in bundle.train:
        assert torch.allclose(x, normalise(bundle.train.dataset.images[index]), atol=1e-6)
        assert torch.equal(y, bundle.train.dataset.labels[index])
        seen += index.tolist()
    assert len(seen) == len(set(seen)) == (N_TRAIN - 8) // 8 * 8  # drop_last on train


def test_augmentation_is_a_function_of_seed_epoch_batch(places, write_fmnist, tmp_path):
    bundle = load(write_fmnist(tmp_path / "root"), batch_size=16)
    dataset = bundle.train.dataset
    assert dataset.augment == Augment(crop_padding=2, hflip=True)
    indices = list(range(16))
    x, _, _ = dataset[(0, 0, 0, indices)]
    assert x.shape == (16, 1, 28, 28)
    assert torch.equal(x, dataset[(0, 0, 0, indices)][0])
    assert not torch.equal(x, dataset[(0, 1, 0, indices)][0])  # another epoch
    assert not torch.equal(x, dataset[(0, 0, 1, indices)][0])  # another batch
    assert not torch.equal(x, dataset[(1, 0, 0, indices)][0])  # another seed
    assert not torch.equal(x, normalise(dataset.images[indices]))
    # The loader's epochs differ too once the sampler is told the epoch.
    first = next(iter(bundle.train))[0]
    bundle.train.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(bundle.train))[0])
    bundle.train.sampler.set_epoch(0)
    assert torch.equal(first, next(iter(bundle.train))[0])


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (C, H, W) moved by (dy, dx) with zero fill."""
    out = torch.zeros_like(image)
    h, w = image.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_random_crop_is_a_zero_filled_shift():
    images = torch.rand(24, 2, 6, 5) + 0.5  # no zeros, so padding shows
    dataset = ArrayImageDataset(images, torch.zeros(24), (0.0, 0.0), (1.0, 1.0), Augment(crop_padding=2))
    x, _, _ = dataset[(0, 0, 0, list(range(24)))]
    shifts = set()
    for i in range(24):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(x[i], shifted(images[i], dy, dx))]
        assert len(matches) == 1, f"image {i} is no shift of its source"
        shifts.add(matches[0])
    assert len(shifts) > 3


def test_hflip_flips_some_images_and_keeps_others():
    images = torch.rand(32, 1, 4, 4)
    dataset = ArrayImageDataset(images, torch.zeros(32), (0.0,), (1.0,), Augment(hflip=True))
    x, _, _ = dataset[(5, 0, 0, list(range(32)))]
    flipped = [torch.equal(x[i], images[i].flip(2)) for i in range(32)]
    kept = [torch.equal(x[i], images[i]) for i in range(32)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < 32


def test_array_dataset_rejects_bad_shapes():
    with pytest.raises(TorchSlimError, match=r"\(3, 28, 28\)"):
        ArrayImageDataset(torch.zeros(3, 28, 28), torch.zeros(3), (0.0,), (1.0,))
    with pytest.raises(TorchSlimError):
        ArrayImageDataset(torch.zeros(3, 1, 2, 2), torch.zeros(4), (0.0,), (1.0,))


# --- the epoch batch sampler ----------------------------------------------------------------------


def test_sampler_covers_every_index_once_per_epoch():
    sampler = EpochBatchSampler(23, 5, shuffle=True, drop_last=False, seed=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    assert [len(b[3]) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(i for b in batches for i in b[3]) == list(range(23))
    assert [(s, e, k) for s, e, k, _ in batches] == [(7, 0, k) for k in range(5)]
    assert [b[3] for b in sampler] == [b[3] for b in batches]  # same epoch, same order
    sampler.set_epoch(1)
    again = list(sampler)
    assert all(b[1] == 1 for b in again)
    assert sorted(i for b in again for i in b[3]) == list(range(23))
    assert [b[3] for b in again] != [b[3] for b in batches]


def test_sampler_without_shuffle_is_in_order_and_drop_last_drops():
    sampler = EpochBatchSampler(23, 5, shuffle=False, drop_last=True)
    assert [b[3] for b in sampler] == [list(range(k, k + 5)) for k in range(0, 20, 5)]
    assert len(sampler) == 4


@pytest.mark.parametrize(("n", "drop_last"), [(20, False), (23, False), (23, True), (37, False)])
def test_sampler_shards_are_disjoint_and_equal(n, drop_last):
    shards = []
    for rank in (0, 1):
        sampler = EpochBatchSampler(n, 4, shuffle=True, drop_last=drop_last, seed=1)
        sampler.shard(rank, 2)
        sampler.set_epoch(3)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == len(sampler) > 0
    idx0, idx1 = ({i for b in s for i in b[3]} for s in shards)
    assert idx0.isdisjoint(idx1)
    if n % 8 == 0:
        assert idx0 | idx1 == set(range(n))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 16), drop_last=st.booleans(),
       world_size=st.integers(1, 4), seed=st.integers(0, 2**31), epoch=st.integers(0, 50))
def test_sampler_properties(n, batch_size, drop_last, world_size, seed, epoch):
    shards, counts = [], set()
    for rank in range(world_size):
        sampler = EpochBatchSampler(n, batch_size, shuffle=True, drop_last=drop_last, seed=seed,
                                    rank=rank, world_size=world_size)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(0 < len(b[3]) <= batch_size for b in batches)
        if drop_last:
            assert all(len(b[3]) == batch_size for b in batches)
        shards.append([i for b in batches for i in b[3]])
        counts.add(len(batches))
    assert len(counts) == 1  # every rank runs the same number of steps
    flat = [i for s in shards for i in s]
    assert len(flat) == len(set(flat)) and set(flat) <= set(range(n))
    if world_size == 1 and not drop_last:
        assert sorted(flat) == list(range(n))


@pytest.mark.parametrize("bad", [0, -3])
def test_sampler_rejects_non_positive_batch_size(bad):
    with pytest.raises(TorchSlimError, match=f"got {bad}"):
        EpochBatchSampler(10, bad, shuffle=True, drop_last=False)


# --- downloading ----------------------------------------------------------------------------------


class Mirror(http.server.ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) from memory and records the paths asked for."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), MirrorHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's naming)
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path.lstrip("/"))
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(fmnist_arrays, monkeypatch, tmp_path):
    """A local mirror of the tiny files, with ``fm.FILES`` set to their checksums and sizes."""
    server = Mirror()
    staging = tmp_path / "staging"
    staging.mkdir()
    files = {}
    for stem, array in fmnist_arrays.items():
        write_idx(staging / stem, array)
        content = (staging / stem).read_bytes()
        files[stem] = (hashlib.sha256(content).hexdigest(), len(content))
        server.files[stem + ".gz"] = gzip.compress(content)
    monkeypatch.setattr(fm, "FILES", files)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_fetch_downloads_verified_files_atomically(mirror, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    writes = []

    def spy(path, payload):  # the target must not exist until the whole, verified file is in place
        assert not Path(path).exists()
        writes.append(Path(path))
        return real_write(path, payload)

    real_write = fm.atomic_write_bytes
    monkeypatch.setattr(fm, "atomic_write_bytes", spy)
    paths = fm.fetch(cache, mirror=mirror.url, timeout=5)
    assert sorted(p.name for p in cache.iterdir()) == sorted(s + ".gz" for s in STEMS)  # no temp files
    assert writes == [cache / (s + ".gz") for s in STEMS]
    for stem, path in paths.items():
        assert path == cache / (stem + ".gz") and path.read_bytes() == mirror.files[stem + ".gz"]
    assert len(mirror.requests) == 4
    fm.fetch(cache, mirror=mirror.url, timeout=5)  # present files are not fetched again
    assert len(mirror.requests) == 4


@pytest.mark.parametrize("which", [0, 3], ids=["first-file", "last-file"])
@pytest.mark.parametrize("damage", ["wrong-content", "bad-gzip"])
def test_fetch_refuses_bad_content(mirror, tmp_path, which, damage):
    stem = STEMS[which]
    payload = mirror.files[stem + ".gz"]
    mirror.files[stem + ".gz"] = (gzip.compress(b"not the dataset") if damage == "wrong-content"
                                  else payload[: len(payload) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(CorruptFileError) as info:
        fm.fetch(cache, mirror=mirror.url, timeout=5)
    assert str(cache / (stem + ".gz")) in str(info.value)
    assert sorted(p.name for p in cache.iterdir()) == sorted(s + ".gz" for s in STEMS[:which])


def test_load_downloads_into_the_cache(mirror, places, monkeypatch):
    monkeypatch.delenv("TORCHSLIM_DATA")  # no location given: the download may stand in
    monkeypatch.setattr(fm, "fetch", functools.partial(fm.fetch, mirror=mirror.url, timeout=5))
    bundle = data.load("fashion-mnist", val_size=8, download=True)
    assert bundle.info["root"] == str(places.cache)
    assert len(bundle.train.dataset) == N_TRAIN - 8 and len(bundle.test.dataset) == N_TEST
    assert len(mirror.requests) == 4


def test_failed_download_is_data_not_found(mirror, places, monkeypatch):
    monkeypatch.delenv("TORCHSLIM_DATA")  # no location given: the download may stand in
    mirror.files.clear()  # every file 404s
    monkeypatch.setattr(fm, "fetch", functools.partial(fm.fetch, mirror=mirror.url, timeout=5))
    with pytest.raises(DataNotFoundError, match="Downloading from .* failed") as info:
        data.load("fashion-mnist", download=True)
    assert str(places.cache) in str(info.value)
    assert list(places.cache.iterdir()) == []


# --- the real files, where Debian's dataset-fashion-mnist is installed ----------------------------


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason=f"{DEBIAN_DIR} absent (Debian package dataset-fashion-mnist)")
def test_real_debian_files_load():
    bundle = data.load("fashion-mnist", root=DEBIAN_DIR, download=False)
    assert bundle.info["root"] == str(DEBIAN_DIR)
    assert (len(bundle.train.dataset), len(bundle.val.dataset), len(bundle.test.dataset)) == (55000, 5000, 10000)
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10
    assert set(bundle.test.dataset.labels.unique().tolist()) == set(range(10))
    pixels = torch.cat([bundle.train.dataset.images, bundle.val.dataset.images]).float() / 255
    assert abs(pixels.mean().item() - fm.MEAN[0]) < 1e-3 and abs(pixels.std().item() - fm.STD[0]) < 1e-3


# --- synthetic ------------------------------------------------------------------------------------


def test_synthetic_is_seeded():
    a, b, c = (data.load("synthetic", seed=s, train_size=32, val_size=8, test_size=16) for s in (1, 1, 2))
    for split in ("train", "val", "test"):
        da, db, dc = (getattr(x, split).dataset for x in (a, b, c))
        assert torch.equal(da.images, db.images) and torch.equal(da.labels, db.labels)
        assert not torch.equal(da.images, dc.images)


def test_synthetic_any_shape_and_class_count():
    bundle = data.load("synthetic", shape=(3, 8, 8), num_classes=7, batch_size=4, train_size=64,
                       val_size=0, test_size=10)
    assert bundle.input_shape == (3, 8, 8) and bundle.num_classes == 7 and len(bundle.class_names) == 7
    assert bundle.val is None
    x, y, _ = next(iter(bundle.train))
    assert x.shape == (4, 3, 8, 8) and y.dtype == torch.int64
    assert bundle.train.dataset.labels.min() >= 0 and bundle.train.dataset.labels.max() <= 6
    assert len(bundle.train.dataset.labels.unique()) > 1


@pytest.mark.parametrize(
    "kwargs",
    [{"shape": (8, 8)}, {"shape": (1, 0, 8)}, {"shape": (3, 8, -1)}, {"shape": (1, 2, 3, 4)},
     {"num_classes": 1}, {"num_classes": 0}, {"train_size": 0}, {"test_size": -1}, {"val_size": -1}],
    ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()),
)
def test_synthetic_rejects_bad_arguments(kwargs):
    key = next(iter(kwargs))
    with pytest.raises(TorchSlimError, match=key):
        data.load("synthetic", **kwargs)


def test_from_loaders_wraps_plain_dataloaders():
    from torch.utils.data import DataLoader, TensorDataset

    from torchslim.core.errors import TorchSlimError
    from torchslim.data import from_loaders

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 6, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    y[0] = 2
    bundle = from_loaders(DataLoader(TensorDataset(x[:30], y[:30]), batch_size=7, shuffle=True),
                          DataLoader(TensorDataset(x[30:], y[30:]), batch_size=4), batch_size=8)
    assert bundle.num_classes == 3 and bundle.input_shape == (1, 6, 6) and bundle.val is None
    xb, yb, index = bundle.example_batch(2), *next(iter(bundle.test))[1:]
    torch.testing.assert_close(xb, x[30:32])  # the images as the user's loader gave them
    assert torch.equal(yb, y[30:38]) and torch.equal(index, torch.arange(8))
    assert sum(len(b[1]) for b in bundle.train) == 24  # 30 samples, full batches of 8 when training
    with pytest.raises(TorchSlimError, match="label 2 is not below num_classes=2"):
        from_loaders([(x[:4], y[:4])], [(x[4:8], torch.full((4,), 2))], num_classes=2)
    with pytest.raises(TorchSlimError, match="test loader's batch 0 labels"):
        from_loaders([(x[:4], y[:4])], [(x[4:8], torch.rand(4))])
    with pytest.raises(TorchSlimError, match="train loader yielded no batches"):
        from_loaders([], [(x[:4], y[:4])])


# --- from_loaders reads in a fixed order -------------------------------------------------------------


class _NoisyImages(torch.utils.data.Dataset):
    """A map-style dataset whose __getitem__ adds random noise (an unseeded random transform)."""

    def __init__(self, n: int = 24) -> None:
        self.x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i] + 0.1 * torch.rand(1, 4, 4), i % 3


def test_from_loaders_reads_a_shuffling_loader_in_index_order_with_seeded_transforms():
    from torch.utils.data import DataLoader, SubsetRandomSampler

    from torchslim.data import from_loaders

    test = DataLoader(_NoisyImages(), batch_size=5)
    torch.manual_seed(1)
    a = from_loaders(DataLoader(_NoisyImages(), batch_size=5, shuffle=True), test, batch_size=4)
    torch.manual_seed(2)  # another global RNG state: the same snapshot
    b = from_loaders(DataLoader(_NoisyImages(), batch_size=5, shuffle=True), test, batch_size=4)
    assert torch.equal(a.train.dataset.images, b.train.dataset.images)
    assert torch.equal(a.train.dataset.images[:, 0, 0, 0].floor(), torch.arange(24.0))  # index order
    assert torch.equal(a.train.dataset.labels, torch.arange(24) % 3)
    state = torch.get_rng_state()
    from_loaders(DataLoader(_NoisyImages(), batch_size=5), test, batch_size=4)
    assert torch.equal(state, torch.get_rng_state())  # the caller's generator is left as it was
    subset = from_loaders(DataLoader(_NoisyImages(), batch_size=5, sampler=SubsetRandomSampler([9, 2, 17, 5])),
                          test, batch_size=2)
    assert subset.train.dataset.images[:, 0, 0, 0].floor().tolist() == [2.0, 5.0, 9.0, 17.0]


def test_from_loaders_takes_a_seeded_sampler_without_a_dataset_and_refuses_an_unseeded_one():
    from torch.utils.data import RandomSampler

    from torchslim.data import from_loaders

    class Batches:
        def __init__(self, generator=None):
            self.sampler = RandomSampler(range(12), generator=generator)

        def __iter__(self):
            order = torch.tensor(list(self.sampler))
            for i in range(0, 12, 4):
                yield torch.zeros(4, 1, 2, 2) + order[i:i + 4].view(4, 1, 1, 1), order[i:i + 4] % 2

    bundle = from_loaders(Batches(torch.Generator().manual_seed(0)), Batches(torch.Generator().manual_seed(0)),
                          batch_size=4)
    assert len(bundle.train.dataset) == 12
    with pytest.raises(TorchSlimError, match="RandomSampler without a seeded generator.*shuffle=False"):
        from_loaders(Batches(), Batches(torch.Generator().manual_seed(0)), batch_size=4)


def test_from_loaders_default_batch_size_is_the_training_loaders():
    from torch.utils.data import DataLoader

    from torchslim.data import from_loaders

    bundle = from_loaders(DataLoader(_NoisyImages(), batch_size=6), DataLoader(_NoisyImages(), batch_size=5))
    assert [len(b[1]) for b in bundle.train] == [6, 6, 6, 6]


def test_fewer_calibration_batches_than_asked_is_said():
    from torchslim.quantize.calibration import CalibrationWarning, take

    loader = [(torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long))] * 2
    with pytest.warns(CalibrationWarning, match="asked for 16 batches but the loader has only 2"):
        arrays = take(loader, 16, "input", None)
    assert len(arrays) == 2
