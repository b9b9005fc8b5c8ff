"""Datasets, batched augmentation and the device-resident loader (SPEC 1.5, 2.2)."""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cellnas.data import (
    Augment,
    DeviceLoader,
    cutout,
    get_dataset,
    list_datasets,
    make_loaders,
    normalize,
    random_crop_flip,
    search_split,
)
from cellnas.data import cifar as cifar_mod
from cellnas.data.cifar import download_archive
from cellnas.data.datasets import channel_stats
from cellnas.errors import CellnasError, DataError, RunError

PER_BATCH = 20


# --------------------------------------------------------------------------------------------- fixtures


def _dump(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _write_cifar10(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny CIFAR-10 in the real layout: 5 training batches + a test batch of 20 images each."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, PER_BATCH).tolist()
        _dump(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                              b"filenames": [b"x.png"] * PER_BATCH})
        written[name] = data
    _dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)],
                                    b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072})
    return written


def _write_cifar100(root: Path) -> None:
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 40), ("test", 10)):
        _dump(folder / name, {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                              b"fine_labels": rng.integers(0, 100, n).tolist(),
                              b"coarse_labels": rng.integers(0, 20, n).tolist()})
    _dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})


def _tar_folder(src_root: Path, folder: str, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src_root / folder, arcname=folder)


def _png_folder(root: Path, classes=("cat", "dog", "emu"), per_class: int = 5) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            img = Image.fromarray(arr) if i else Image.fromarray(arr[..., 0])  # one greyscale image per class
            img.save(root / c / f"{i}.png")
        (root / c / "notes.txt").write_text("not an image")


def _uint8_batch(b: int = 64, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (b, c, h, w), dtype=torch.uint8, generator=gen)  # no zeros: padding is visible


def _loader(n: int = 10, batch_size: int = 4, seed=0, **kw) -> DeviceLoader:
    x = _uint8_batch(n, 3, 6, 6, seed=123)
    kw.setdefault("augment", Augment(2, True, 3))
    return DeviceLoader(x, torch.arange(n), batch_size, mean=(0.5,) * 3, std=(0.25,) * 3, seed=seed, **kw)


# --------------------------------------------------------------------------------------------- CIFAR files


def test_cifar10_reads_the_pickle_batches(tmp_path):
    written = _write_cifar10(tmp_path)
    ds = get_dataset("cifar10", data_dir=tmp_path)
    assert ds.train_x.shape == (5 * PER_BATCH, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (PER_BATCH, 3, 32, 32) and ds.test_y.dtype == torch.int64
    assert int(ds.train_y.min()) >= 0 and int(ds.train_y.max()) < 10 == ds.num_classes
    # rows are R, G, B planes of 32x32; batches concatenate in order
    assert np.array_equal(ds.train_x[PER_BATCH].numpy(), written["data_batch_2"][0].reshape(3, 32, 32))
    assert np.array_equal(ds.test_x[-1].numpy().reshape(-1), written["test_batch"][-1])
    assert ds.mean == pytest.approx((0.49139968, 0.48215827, 0.44653124))
    assert ds.std == pytest.approx((0.24703233, 0.24348505, 0.26158768))
    assert ds.classes == [f"c{i}" for i in range(10)] and ds.default_crop_padding == 4


def test_cifar10_reads_batches_pickled_by_numpy_1(tmp_path):
    written = _write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    # the official files (and numpy < 2) name numpy.core.multiarray; numpy >= 2 writes numpy._core.multiarray
    batch.write_bytes(batch.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray" in batch.read_bytes()
    ds = get_dataset("cifar10", data_dir=tmp_path)
    assert np.array_equal(ds.train_x[:PER_BATCH].numpy().reshape(PER_BATCH, -1), written["data_batch_1"])


def test_cifar100_reads_fine_labels(tmp_path):
    _write_cifar100(tmp_path)
    ds = get_dataset("cifar100", data_dir=tmp_path)
    assert ds.train_x.shape == (40, 3, 32, 32) and ds.test_x.shape == (10, 3, 32, 32)
    assert ds.num_classes == 100 and int(ds.train_y.max()) < 100 and len(ds.classes) == 100
    assert ds.mean == pytest.approx((0.5071, 0.4865, 0.4409))


def test_cifar10_is_extracted_from_the_archive(tmp_path):
    src = tmp_path / "src"
    _write_cifar10(src)
    data = tmp_path / "data"
    data.mkdir()
    _tar_folder(src, "cifar-10-batches-py", data / "cifar-10-python.tar.gz")
    ds = get_dataset("cifar10", data_dir=data)
    assert ds.n_train == 5 * PER_BATCH
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_archive_with_path_traversal_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="refusing"):
        get_dataset("cifar10", data_dir=data)
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-python.tar.gz"]


def test_missing_cifar_says_where_to_put_it_and_how_to_download(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", data_dir=missing)
    msg = str(err.value)
    assert str(missing) in msg and "cifar-10-batches-py" in msg
    assert "--data-dir" in msg and "--download" in msg and "cifar-10-python.tar.gz" in msg


def test_truncated_pickle_is_reported_with_its_path(tmp_path):
    _write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert f"{batch} is incomplete or damaged" in msg and "--download" in msg


def test_pickle_with_foreign_globals_is_refused(tmp_path):
    _write_cifar10(tmp_path)
    # os.system would run at load time with a plain pickle.load
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(DataError, match="not a CIFAR batch"):
        get_dataset("cifar10", data_dir=tmp_path)


def _cifar10_archive(tmp_path, extracted: bool, truncated: bool):
    """``data/`` holding a real CIFAR-10 archive (cut short: an interrupted download) and, if ``extracted``, the
    extracted batches beside it; returns (data dir, archive)."""
    src = tmp_path / "src"
    _write_cifar10(src)
    data = tmp_path / "data"
    if extracted:
        _write_cifar10(data)
    data.mkdir(exist_ok=True)
    archive = data / "cifar-10-python.tar.gz"
    _tar_folder(src, "cifar-10-batches-py", archive)
    if truncated:
        archive.write_bytes(archive.read_bytes()[:3000])
    return data, archive


def test_corrupt_archive_is_reported(tmp_path):
    data, archive = _cifar10_archive(tmp_path, extracted=False, truncated=True)
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", data_dir=data)
    msg = str(err.value)
    assert f"{archive} is incomplete or damaged" in msg and "--download" in msg and "--data-dir" in msg
    assert "\n" not in msg and f"delete {archive}" in msg.lower() and cifar_mod.CIFAR["cifar10"].url in msg
    assert "put the" not in msg.lower()  # the archive is already there: placing it is not the fix
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-python.tar.gz"]  # no half-extracted folder


def test_a_partly_extracted_folder_beside_a_partial_archive_blames_the_archive(tmp_path):
    """A hand-extracted partial download: some batches missing, the truncated archive still beside them."""
    data, archive = _cifar10_archive(tmp_path, extracted=True, truncated=True)
    folder = data / "cifar-10-batches-py"
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", data_dir=data)
    msg = str(err.value)
    assert "data_batch_5" in msg and f"{archive} is incomplete or damaged" in msg
    assert str(folder) in msg and "--download" in msg and "put the archive" not in msg.lower()
    (folder / "data_batch_4").write_bytes((folder / "data_batch_4").read_bytes()[:500])
    _dump(folder / "data_batch_5", {})
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", data_dir=data)
    msg = str(err.value)
    assert f"{folder / 'data_batch_4'} is incomplete or damaged" in msg and f"{archive} is incomplete" in msg


def test_a_damaged_batch_beside_an_intact_archive_is_extracted_again(tmp_path, monkeypatch):
    data, archive = _cifar10_archive(tmp_path, extracted=True, truncated=False)
    spec = replace(cifar_mod.CIFAR["cifar10"], md5=hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setitem(cifar_mod.CIFAR, "cifar10", spec)
    batch = data / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", data_dir=data)
    msg = str(err.value)
    assert f"{batch} is incomplete or damaged" in msg and f"delete {batch.parent}" in msg.lower()
    assert str(archive) in msg and "put" not in msg.lower()
    shutil.rmtree(batch.parent)  # the advice works: the intact archive is extracted again
    assert get_dataset("cifar10", data_dir=data).n_train == 5 * PER_BATCH


def test_download_checks_the_md5_before_the_file_appears(tmp_path):
    src = tmp_path / "src"
    _write_cifar10(src)
    archive = tmp_path / "official.tar.gz"
    _tar_folder(src, "cifar-10-batches-py", archive)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    dest = tmp_path / "dl" / "cifar-10-python.tar.gz"
    with pytest.raises(DataError, match="MD5"):
        download_archive(archive.as_uri(), "0" * 32, dest)
    assert list(dest.parent.iterdir()) == []  # neither the archive nor a .part file
    with pytest.raises(DataError, match="could not download"):
        download_archive((tmp_path / "absent.tar.gz").as_uri(), md5, dest)
    assert download_archive(archive.as_uri(), md5, dest) == dest and dest.read_bytes() == archive.read_bytes()


def test_get_dataset_download_fetches_extracts_and_loads(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _write_cifar10(src)
    archive = tmp_path / "official.tar.gz"
    _tar_folder(src, "cifar-10-batches-py", archive)
    spec = replace(cifar_mod.CIFAR["cifar10"], url=archive.as_uri(), md5=hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setitem(cifar_mod.CIFAR, "cifar10", spec)
    ds = get_dataset("cifar10", data_dir=tmp_path / "data", download=True)
    assert ds.n_train == 5 * PER_BATCH and (tmp_path / "data" / "cifar-10-python.tar.gz").is_file()


# --------------------------------------------------------------------------------------------- other datasets


def test_digits_sizes_values_and_split():
    ds = get_dataset("digits")
    assert (ds.n_train, ds.n_test) == (1438, 359) and ds.train_x.shape[1:] == (1, 8, 8)
    assert ds.train_x.dtype == torch.uint8 and int(ds.train_x.max()) == 255 and int(ds.train_x.min()) == 0
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(torch.unique(ds.train_x).tolist()) <= allowed
    assert set(ds.test_y.tolist()) == set(range(10)) and set(ds.train_y.tolist()) == set(range(10))
    assert ds.mean == pytest.approx(channel_stats(ds.train_x)[0]) and 0 < ds.std[0] < 1
    assert ds.default_crop_padding == 1 and ds.default_flip is False
    again = get_dataset("digits")
    assert torch.equal(ds.train_x, again.train_x) and torch.equal(ds.test_y, again.test_y)


def test_digits_resized():
    ds = get_dataset("digits", image_size=16)
    assert ds.train_x.shape == (1438, 1, 16, 16) and ds.image_size == 16 and ds.default_crop_padding == 2


def _tested_and_trained_in_every_class(ds, per_class: int) -> bool:
    tested, trained = torch.bincount(ds.test_y, minlength=ds.num_classes), torch.bincount(ds.train_y)
    return bool((tested >= 1).all() and (trained >= 1).all() and (tested + trained == per_class).all())


def test_imagefolder_split_per_class(tmp_path):
    _png_folder(tmp_path)
    ds = get_dataset(f"imagefolder:{tmp_path}")
    assert ds.classes == ["cat", "dog", "emu"] and ds.num_classes == 3 and ds.in_channels == 3
    assert ds.n_train + ds.n_test == 15 and ds.train_x.shape[1:] == ds.test_x.shape[1:] == (3, 32, 32)
    assert _tested_and_trained_in_every_class(ds, per_class=5)
    assert ds.split["rule"] == "hash-v1" and (ds.split["n_train"], ds.split["n_test"]) == (ds.n_train, ds.n_test)
    again = get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert again.train_x.shape == (ds.n_train, 3, 8, 8) and torch.equal(again.test_y, ds.test_y)
    assert again.split == ds.split


def test_imagefolder_uses_train_and_test_subfolders(tmp_path):
    _png_folder(tmp_path / "train", per_class=3)
    _png_folder(tmp_path / "val", classes=("cat", "emu"), per_class=2)
    ds = get_dataset(f"imagefolder:{tmp_path}")
    assert (ds.n_train, ds.n_test) == (9, 4) and ds.test_y.tolist() == [0, 0, 2, 2]
    assert ds.split["rule"] == "folders" and ds.split["test_folder"] == "val" and ds.split["n_test"] == 4


def test_imagefolder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        get_dataset(f"imagefolder:{tmp_path / 'absent'}")
    with pytest.raises(DataError, match="no class sub-folders"):
        get_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="one class sub-folder"):
        get_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        get_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "b").rmdir()
    _png_folder(tmp_path, classes=("b",), per_class=2)
    bad = tmp_path / "a" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError) as err:
        get_dataset(f"imagefolder:{tmp_path}")
    assert str(bad) in str(err.value)


def test_imagefolder_train_alone_is_split_and_never_read_as_one_class(tmp_path):
    """PATH/train/<class> without test/ or val/: the classes of train/, split per class (not one class 'train')."""
    _png_folder(tmp_path / "train")
    ds = get_dataset(f"imagefolder:{tmp_path}")
    assert ds.classes == ["cat", "dog", "emu"] and _tested_and_trained_in_every_class(ds, per_class=5)
    flat = tmp_path / "flat"
    shutil.copytree(tmp_path / "train", flat)
    assert get_dataset(f"imagefolder:{flat}").split == ds.split  # split as if train/ were the root
    one = tmp_path / "one"
    _png_folder(one / "train", classes=("cat",))
    with pytest.raises(DataError, match="at least two"):
        get_dataset(f"imagefolder:{one}")


def test_imagefolder_split_layout_errors_name_the_folder(tmp_path):
    _png_folder(tmp_path / "test")
    with pytest.raises(DataError, match="test/ but no train/"):
        get_dataset(f"imagefolder:{tmp_path}")
    _png_folder(tmp_path / "train")
    for d in (tmp_path / "test").iterdir():  # the test classes exist but hold no images
        for f in d.iterdir():
            f.unlink()
    with pytest.raises(DataError, match="holds no images") as err:
        get_dataset(f"imagefolder:{tmp_path}")
    assert str(tmp_path / "test") in str(err.value)


@pytest.mark.parametrize("named", ["train", "test", "val"])
def test_imagefolder_class_named_like_a_split_is_a_class(tmp_path, named):
    """cat/ dog/ train/ (each holding images) is a flat folder of three classes, not a split layout."""
    _png_folder(tmp_path, classes=("cat", "dog", named), per_class=5)
    ds = get_dataset(f"imagefolder:{tmp_path}")
    assert ds.classes == sorted(["cat", "dog", named]) and ds.num_classes == 3
    assert _tested_and_trained_in_every_class(ds, per_class=5)


def test_imagefolder_refuses_split_folders_mixed_with_other_folders(tmp_path):
    """train/<class>/ and test/<class>/ beside extras/: neither layout reads it without silently dropping a folder."""
    _png_folder(tmp_path / "train", per_class=3)
    _png_folder(tmp_path / "test", per_class=2)
    _png_folder(tmp_path, classes=("extras",), per_class=2)
    with pytest.raises(DataError) as err:
        get_dataset(f"imagefolder:{tmp_path}")
    msg = str(err.value)
    assert "train/" in msg and "test/" in msg and "extras/" in msg and str(tmp_path) in msg and "\n" not in msg
    assert "PATH/<class>/<images>" in msg and "PATH/train/<class>/<images>" in msg  # the two valid layouts


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(CellnasError) as err:
        get_dataset("mnist")
    msg = str(err.value)
    assert "'mnist'" in msg and "digits" in msg and "cifar10" in msg and "imagefolder:PATH" in msg
    assert {"digits", "cifar10", "cifar100"} <= set(list_datasets())


# --------------------------------------------------------------------------------------------- augmentation


def test_crop_is_a_window_of_the_zero_padded_image():
    x, p = _uint8_batch(), 2
    gen = torch.Generator().manual_seed(5)
    offsets = torch.randint(0, 2 * p + 1, (x.shape[0], 2), generator=torch.Generator().manual_seed(5))
    out = random_crop_flip(x, p, False, gen)
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
    assert len({tuple(o) for o in offsets.tolist()}) > 5  # offsets vary per image
    assert (out == 0).any() and out.dtype == torch.uint8  # some padding shows


def test_flip_is_exactly_a_mirror_of_the_unflipped_crop():
    x = _uint8_batch()
    plain = random_crop_flip(x, 2, False, torch.Generator().manual_seed(7))
    flipped = random_crop_flip(x, 2, True, torch.Generator().manual_seed(7))
    same = [torch.equal(flipped[i], plain[i]) for i in range(len(x))]
    mirrored = [torch.equal(flipped[i], plain[i].flip(-1)) for i in range(len(x))]
    assert all(s != m for s, m in zip(same, mirrored))  # each image is one or the other
    assert 10 < sum(mirrored) < 54  # Bernoulli(0.5) per image
    only_flip = random_crop_flip(x, 0, True, torch.Generator().manual_seed(7))
    assert all(torch.equal(only_flip[i], x[i]) or torch.equal(only_flip[i], x[i].flip(-1)) for i in range(len(x)))


def test_cutout_zeroes_exactly_the_clipped_square():
    b, h, w, length = 256, 8, 8, 4
    x = torch.ones(b, 3, h, w)
    out = cutout(x, length, torch.Generator().manual_seed(3))
    replay = torch.Generator().manual_seed(3)
    cy = torch.randint(0, h, (b,), generator=replay)
    cx = torch.randint(0, w, (b,), generator=replay)
    clipped = 0
    for i in range(b):
        y0, x0 = int(cy[i]) - length // 2, int(cx[i]) - length // 2
        expected = torch.ones(3, h, w)
        expected[:, max(y0, 0) : y0 + length, max(x0, 0) : x0 + length] = 0
        assert torch.equal(out[i], expected)
        zero_rows = (out[i, 0] == 0).any(1).sum().item()
        zero_cols = (out[i, 0] == 0).any(0).sum().item()
        assert (out[i] == 0).sum() == 3 * zero_rows * zero_cols  # one axis-aligned rectangle, all channels
        clipped += zero_rows * zero_cols < length * length
    assert 0 < clipped < b  # borders clip some squares, not all


def test_normalize_uses_the_channel_constants():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 2, 1, 3)
    out = normalize(x, (0.2, 0.5), (0.5, 0.25))
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, 0, 0], torch.tensor([-0.4, 0.0, 1.6]), atol=1e-6)
    assert torch.allclose(out[0, 1, 0], torch.tensor([-2.0, -1.2, 2.0]), atol=1e-6)
    assert normalize(x, (0.2, 0.5), (0.5, 0.25), torch.bfloat16).dtype == torch.bfloat16


def test_augment_none_gives_the_normalised_images_in_order():
    x = _uint8_batch(10)
    loader = DeviceLoader(x, torch.arange(10), 4, mean=(0.5,) * 3, std=(0.25,) * 3, augment=None, shuffle=False)
    xs, ys = zip(*loader)
    assert torch.equal(torch.cat(ys), torch.arange(10))
    assert torch.equal(torch.cat(xs), normalize(x, (0.5,) * 3, (0.25,) * 3))


# --------------------------------------------------------------------------------------------- loader


def test_epoch_covers_every_image_once():
    loader = _loader(10, 4)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2] and loader.epoch == 0
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(10))
    assert all(x.shape[1:] == (3, 6, 6) and x.dtype == torch.float32 for x, _ in batches)
    dropped = _loader(10, 4, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in dropped] == [4, 4]


def test_same_seed_same_batches_different_seed_different():
    def run(seed):
        loader = _loader(10, 4, seed=seed)
        return [loader.next() for _ in range(7)]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


def test_next_is_an_endless_reshuffling_stream():
    loader = _loader(10, 5)
    orders = []
    for epoch in range(4):
        orders.append(torch.cat([loader.next()[1], loader.next()[1]]).tolist())
        assert loader.epoch == epoch and sorted(orders[-1]) == list(range(10))
    assert len({tuple(o) for o in orders}) > 1


def test_iteration_after_next_finishes_the_current_epoch():
    loader = _loader(10, 4)
    first = loader.next()[1].tolist()
    rest = torch.cat([y for _, y in loader]).tolist()
    assert sorted(first + rest) == list(range(10)) and loader.epoch == 0
    assert len(list(loader)) == 3 and loader.epoch == 1


@pytest.mark.parametrize("taken", [0, 1, 2, 3])
def test_state_dict_resumes_with_identical_batches(taken):
    original = _loader(10, 4, seed=0)
    for _ in range(taken):
        original.next()
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    expected = [original.next() for _ in range(5)]  # crosses at least one epoch boundary

    resumed = _loader(10, 4, seed=99)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer))
    got = [resumed.next() for _ in range(5)]
    assert all(torch.equal(xe, xg) and torch.equal(ye, yg) for (xe, ye), (xg, yg) in zip(expected, got))
    assert resumed.epoch == original.epoch


def test_state_dict_resumes_a_for_loop_mid_epoch():
    original = _loader(10, 3)
    it = iter(original)
    next(it)
    state = original.state_dict()
    expected = [y for _, y in it] + [y for _, y in original]
    resumed = _loader(10, 3)
    resumed.load_state_dict(state)
    got = [y for _, y in resumed] + [y for _, y in resumed]
    assert len(got) == len(expected) == 7 and all(torch.equal(a, b) for a, b in zip(expected, got))


def test_load_state_dict_refuses_another_batch_size():
    with pytest.raises(RunError, match="batch_size"):
        _loader(10, 5).load_state_dict(_loader(10, 4).state_dict())


def test_channels_last_and_dtype():
    x, _ = _loader(10, 4, dtype=torch.bfloat16, channels_last=True).next()
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_loader_rejects_unusable_input():
    with pytest.raises(DataError, match="uint8"):
        DeviceLoader(torch.zeros(4, 3, 2, 2), torch.arange(4), 2, mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(DataError, match="drop_last"):
        _loader(10, 11, drop_last=True)


# --------------------------------------------------------------------------------------------- splits


def test_search_split_is_first_portion_in_order():
    train, valid = search_split(11, 0.5)
    assert train.tolist() == list(range(5)) and valid.tolist() == list(range(5, 11))
    train, valid = search_split(50_000)
    assert len(train) == len(valid) == 25_000 and int(train[-1]) == 24_999 and int(valid[0]) == 25_000
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(DataError, match="train_portion"):
            search_split(10, bad)


def test_make_loaders_search_and_train():
    ds = get_dataset("digits")
    search = make_loaders(ds, batch_size=64, seed=0, split="search")
    assert search.train.num_samples == search.valid.num_samples == 719
    assert search.train.augment == Augment(1, False, 0) and search.valid.augment == Augment(1, False, 0)
    assert torch.equal(search.train.labels, ds.train_y[:719]) and torch.equal(search.valid.labels, ds.train_y[719:])
    assert not torch.equal(search.train.next()[1], search.valid.next()[1])

    train, test = make_loaders(ds, batch_size=64, seed=0, split="train", augment=Augment(1, False, 4),
                               eval_batch_size=100)
    assert train.num_samples == 1438 and train.augment.cutout == 4 and train.shuffle
    assert test.num_samples == 359 and test.batch_size == 100 and not test.shuffle and not test.augment.is_random
    with pytest.raises(CellnasError, match="split"):
        make_loaders(ds, batch_size=8, split="test")


def test_bench_data_reports_throughput():
    from cellnas.bench.data import bench_data

    result = bench_data("digits", batch_size=32, n_batches=2, num_workers=(0,))
    assert result["device"] == "cpu" and result["ours_images_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["ours_images_per_s"] / result["torch_dataloader_images_per_s"])


def test_imagefolder_with_one_image_per_class_says_each_class_needs_two(tmp_path):
    _png_folder(tmp_path, classes=("a", "b"), per_class=1)
    with pytest.raises(DataError, match="at least 2 images") as err:
        get_dataset(f"imagefolder:{tmp_path}")
    assert "test" in str(err.value) and "\n" not in str(err.value)


def test_cifar_test_set_alone_skips_the_training_batches(tmp_path):
    written = _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02 truncated")
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    ds = get_dataset("cifar10", data_dir=tmp_path, train=False)
    assert ds.n_train == 0 and ds.n_test == PER_BATCH and ds.classes == [f"c{i}" for i in range(10)]
    assert torch.equal(ds.test_x.reshape(PER_BATCH, -1), torch.from_numpy(written["test_batch"]))
    with pytest.raises(DataError, match="data_batch_5"):
        get_dataset("cifar10", data_dir=tmp_path)  # training still needs every batch


def test_sample_draws_distinct_images_afresh_every_call_and_leaves_the_stream_alone():
    """quark0's architecture batch, next(iter(valid_queue)): a full batch of distinct images, with replacement
    across calls (an image can come back before the others were seen)."""
    loader = _loader(n=10, batch_size=4, augment=None, shuffle=True)
    seen = []
    for _ in range(30):
        _, y = loader.sample()
        assert y.shape == (4,) and len(set(y.tolist())) == 4
        seen.append(frozenset(y.tolist()))
    assert len(set(seen)) > 3  # not a fixed batch
    first = [a & b for a, b in zip(seen, seen[1:])]
    assert any(first)  # images repeat across consecutive batches: drawn with replacement across steps
    assert loader.epoch == -1  # the stream of next() did not move: it starts its first epoch now
    loader.next()
    assert loader.epoch == 0
