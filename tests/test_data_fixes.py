"""Image folders: a pinned per-class split with a fingerprint, images of any bit depth, every format Pillow reads,
and one-line errors for images Pillow refuses."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest
import torch
from PIL import Image, features

from cellnas.data import get_dataset, imagefolder_split, split_mismatch
from cellnas.errors import CellnasError, DataError


def _image(value: int, size: int = 8) -> Image.Image:
    """An RGB image whose red channel is ``value`` everywhere, so that it can be recognised after reading."""
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[..., 0] = value
    arr[..., 1] = np.arange(size, dtype=np.uint8)[None, :] * 7  # some structure, unchanged by the 8x8 read
    return Image.fromarray(arr)


def _folder(root, classes: dict[str, list[str]]) -> dict[str, int]:
    """PNGs ``root/<class>/<name>``; returns each file's key ``<class>/<name>`` -> its distinct red value."""
    start = len(list(root.glob("*/*"))) if root.is_dir() else 0
    values = {}
    for c, names in classes.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for name in names:
            values[f"{c}/{name}"] = value = start + len(values) + 1
            _image(value).save(root / c / name)
    return values


def _keys(x: torch.Tensor, y: torch.Tensor, classes: list[str]) -> set[tuple[str, int]]:
    """(class, red value) of each image: which files a tensor holds."""
    return {(classes[int(label)], int(img[0, 0, 0])) for img, label in zip(x, y)}


def _documented_test_files(keys: list[str], seed: int = 0, fraction: float = 0.2) -> list[str]:
    """The rule as documented, written again here: a file is tested when sha256("<seed>:<class>/<file>") / 2**64 is
    below the fraction; a class of 2+ with none tested tests its lowest hash, one with all tested trains its highest."""
    u = {k: int.from_bytes(hashlib.sha256(f"{seed}:{k}".encode()).digest()[:8], "big") / 2**64 for k in keys}
    tested = []
    for c in sorted({k.split("/")[0] for k in keys}):
        mine = sorted((k for k in keys if k.split("/")[0] == c), key=u.get)
        chosen = [k for k in mine if u[k] < fraction] if len(mine) >= 2 else []
        if len(mine) >= 2 and not chosen:
            chosen = mine[:1]
        if len(mine) >= 2 and len(chosen) == len(mine):
            chosen = mine[:-1]
        tested += chosen
    return sorted(tested)


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:02d}.png" for i in range(n)]


# --------------------------------------------------------------------------------------------- defect 1: the split


def test_imagefolder_split_follows_the_documented_hash_rule_and_fingerprint(tmp_path):
    values = _folder(tmp_path, {"cat": _names("c", 12), "dog": _names("d", 9), "emu": _names("e", 2)})
    ds = get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    expected = _documented_test_files(list(values))
    assert _keys(ds.test_x, ds.test_y, ds.classes) == {(k.split("/")[0], values[k]) for k in expected}
    fingerprint = hashlib.sha256("\n".join(expected).encode()).hexdigest()[:16]
    assert ds.split == {"rule": "hash-v1", "seed": 0, "test_fraction": 0.2, "n_train": len(values) - len(expected),
                        "n_test": len(expected), "test_files": fingerprint}  # fmt: skip
    assert imagefolder_split(tmp_path) == ds.split  # from the file names alone


def test_adding_images_to_one_class_moves_no_existing_file_and_leaves_the_other_classes_alone(tmp_path):
    """The reviewer's case: 4 images added to cat/ turned 4 training images into test images and changed dog/'s."""
    _folder(tmp_path, {"cat": _names("c", 5), "dog": _names("d", 5)})
    before = get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    _folder(tmp_path, {"cat": _names("new", 4)})
    after = get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    old_train = _keys(before.train_x, before.train_y, before.classes)
    old_test = _keys(before.test_x, before.test_y, before.classes)
    new_test = _keys(after.test_x, after.test_y, after.classes)
    assert not new_test & old_train, "training images became test images"
    assert old_test <= new_test
    assert {k for k in new_test if k[0] == "dog"} == {k for k in old_test if k[0] == "dog"}


def test_the_fingerprint_changes_with_the_test_files_only(tmp_path):
    _folder(tmp_path, {"cat": _names("c", 10), "dog": _names("d", 10)})
    first = imagefolder_split(tmp_path)
    keys = [f"cat/{n}" for n in _names("more", 40)]
    tested = set(_documented_test_files(keys + [f"cat/{n}" for n in _names("c", 10)]))
    trained_name = next(k for k in keys if k not in tested).split("/")[1]
    tested_name = next(k for k in keys if k in tested).split("/")[1]
    _folder(tmp_path, {"cat": [trained_name]})
    second = imagefolder_split(tmp_path)
    assert second["test_files"] == first["test_files"] and second["n_train"] == first["n_train"] + 1
    assert split_mismatch(first, second) is None
    _folder(tmp_path, {"cat": [tested_name]})
    third = imagefolder_split(tmp_path)
    why = split_mismatch(first, third)
    assert third["test_files"] != first["test_files"] and why is not None
    assert f"{first['n_test']} test" in why and f"{third['n_test']} test" in why


def test_a_train_and_test_layout_is_used_as_given_and_fingerprinted(tmp_path):
    _folder(tmp_path / "train", {"cat": _names("c", 3), "dog": _names("d", 3)})
    _folder(tmp_path / "test", {"cat": _names("t", 2), "dog": _names("u", 1)})
    ds = get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert (ds.n_train, ds.n_test) == (6, 3) and ds.split["rule"] == "folders"
    _folder(tmp_path / "test", {"dog": ["extra.png"]})
    assert split_mismatch(ds.split, imagefolder_split(tmp_path)) is not None


def test_the_previous_split_rule_can_still_be_asked_for(tmp_path):
    """Networks trained before the hash rule recorded no split: their test set is the old permutation's."""
    from cellnas.data.datasets import stratified_split
    from cellnas.data.imagefolder import load_imagefolder

    values = _folder(tmp_path, {"cat": _names("c", 6), "dog": _names("d", 4)})
    (tmp_path / "dog" / "skipped-then.webp").write_bytes(b"")  # the old rule read .png .jpg .jpeg .bmp only
    ds = load_imagefolder(tmp_path, image_size=8, split_rule="permutation-v0")
    keys = sorted(values)
    labels = np.array([0 if k.startswith("cat/") else 1 for k in keys])
    _, test_idx = stratified_split(labels, 0.2, 0)
    assert _keys(ds.test_x, ds.test_y, ds.classes) == {(keys[i].split("/")[0], values[keys[i]]) for i in test_idx}
    assert ds.split["rule"] == "permutation-v0"
    with pytest.raises(CellnasError, match="valid choices: hash-v1, permutation-v0"):
        load_imagefolder(tmp_path, split_rule="random")


# --------------------------------------------------------------------------------------------- defect 2: bit depth


def test_16_bit_greyscale_pngs_are_scaled_not_clipped_to_white(tmp_path):
    for c, value in (("dark", 8000), ("light", 50000)):
        (tmp_path / c).mkdir()
        for i in range(2):
            img = Image.fromarray(np.full((8, 8), value, dtype=np.uint16))
            assert img.mode == "I;16"
            img.save(tmp_path / c / f"{i}.png")
    ds = get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    pixels = {ds.classes[int(y)]: set(x.unique().tolist()) for x, y in zip(ds.train_x, ds.train_y)}
    assert pixels == {"dark": {round(8000 * 255 / 65535)}, "light": {round(50000 * 255 / 65535)}}  # 31 and 195


def test_float_and_32_bit_images_are_scaled_or_refused_with_the_file_named(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(tmp_path / c / "half.tif")
        Image.fromarray(np.full((8, 8), 65535, dtype=np.int32)).save(tmp_path / c / "full.tif")
    ds = get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert set(torch.cat([ds.train_x, ds.test_x]).unique().tolist()) == {128, 255}
    bad = tmp_path / "a" / "hdr.tif"
    Image.fromarray(np.full((8, 8), 3.5, dtype=np.float32)).save(bad)
    with pytest.raises(DataError) as err:
        get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert str(bad) in str(err.value) and "[0, 1]" in str(err.value) and "\n" not in str(err.value)
    bad.unlink()
    Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)).save(bad)
    with pytest.raises(DataError, match="70000") as err:
        get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert str(bad) in str(err.value)


# --------------------------------------------------------------------------------------------- defect 3: huge images


def test_an_image_over_pillows_pixel_limit_is_a_one_line_error(tmp_path, monkeypatch):
    _folder(tmp_path, {"a": _names("a", 2), "b": _names("b", 2)})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 8x8 = 64 pixels is over twice the limit: an error
    with pytest.raises(DataError) as err:
        get_dataset(f"imagefolder:{tmp_path}", image_size=8)
    msg = str(err.value)
    assert msg.startswith("cannot read image ") and str(tmp_path) in msg and "MAX_IMAGE_PIXELS" in msg
    assert "downscale" in msg and "\n" not in msg


# --------------------------------------------------------------------------------------------- defect 4: formats


def _formats() -> list[str]:
    return [".tif", ".gif", ".bmp", ".ppm"] + ([".webp"] if features.check("webp") else [])


def test_every_format_pillow_reads_is_an_image_and_other_files_are_named_once(tmp_path, caplog):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i, ext in enumerate(_formats()):
            _image(10 * i + (c == "dog")).save(tmp_path / c / f"{i}{ext}", **({"lossless": True} if ext == ".webp"
                                                                                else {}))  # fmt: skip
        (tmp_path / c / "notes.txt").write_text("not an image")
        (tmp_path / c / ".DS_Store").write_bytes(b"")  # hidden: skipped without a word
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        ds = get_dataset(f"imagefolder:{tmp_path}", image_size=8)
        imagefolder_split(tmp_path)  # listing the folder again (as `cellnas evaluate` does) does not warn again
    assert ds.n_train + ds.n_test == 2 * len(_formats())
    red = sorted(int(v) for v in torch.cat([ds.train_x, ds.test_x])[:, 0, 0, 0])
    assert red == sorted(10 * i + d for i in range(len(_formats())) for d in (0, 1))  # every file read, losslessly
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert "skipped 2 files" in warned[0] and "cat/notes.txt" in warned[0] and ".DS_Store" not in warned[0]
