"""codec.data: the folder dataset, the built-in set, and `prepare` on a hand-made
Debian package and wheel (no network). Training crops: tests/test_sampler.py."""

import json
import os
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from codec import data
from codec.data import (
    DataError,
    DataWarning,
    ImageFolderDataset,
    builtin_images,
    is_reserved,
    main,
    prepare,
)
from codec.image import read_image, write_png


def _smooth(rng, w, h, noise=2):
    """A smooth colourful picture: bicubic-upsampled random colours plus mild noise."""
    coarse = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    img = img.astype(np.int16) + rng.integers(-noise, noise + 1, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=90)


# --------------------------------------------------------------------------- dataset


def test_missing_and_empty_folders_raise_data_error(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*codec.data prepare") as info:
        ImageFolderDataset(tmp_path / "nope")
    assert "nope" in str(info.value) and "data.train_dir" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG/JPEG"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(DataError):
        ImageFolderDataset([])
    with pytest.raises(DataError, match="does not exist"):
        data.list_images(tmp_path / "nope")


def test_folder_of_unreadable_files_raises_after_warnings(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.warns(DataWarning) as record:
        with pytest.raises(DataError, match="no readable image"):
            ImageFolderDataset(tmp_path)
    messages = " ".join(str(w.message) for w in record)
    assert "a.png" in messages and "b.jpg: skipped, file is empty" in messages


def test_items_are_full_images_and_unreadable_files_are_skipped(tmp_path):
    rng = np.random.default_rng(0)
    big, small = _smooth(rng, 120, 90), _smooth(rng, 40, 20)
    write_png(tmp_path / "big.png", big)
    write_png(tmp_path / "small.png", small)
    (tmp_path / "broken.png").write_bytes(b"junk")
    with pytest.warns(DataWarning, match="broken.png"):
        ds = ImageFolderDataset(tmp_path)
    assert [p.name for p in ds.paths] == ["big.png", "small.png"]
    assert ds[0].shape == (3, 90, 120) and ds[1].shape == (3, 20, 40)
    assert ds[0].dtype == torch.float32


def test_eval_items_are_full_images(tmp_path):
    rng = np.random.default_rng(1)
    a = _smooth(rng, 50, 30)
    write_png(tmp_path / "x.png", a)
    ds = ImageFolderDataset([tmp_path / "x.png"], train=False)
    x = ds[0]
    assert x.shape == (3, 30, 50)
    np.testing.assert_array_equal((x.permute(1, 2, 0) * 255).round().byte().numpy(), a)


def test_training_crops_are_not_made_here(tmp_path):
    """One crop path (codec.data.make_sampler): asking the dataset for crops is an error,
    not a silent switch to full images; the older evaluation call still works."""
    rng = np.random.default_rng(1)
    write_png(tmp_path / "x.png", _smooth(rng, 50, 30))
    for kwargs in ({"train": True}, {"crop_size": 16}, {"crop_size": 16, "train": True}):
        with pytest.raises(ValueError, match="make_sampler"):
            ImageFolderDataset(tmp_path, **kwargs)
    assert ImageFolderDataset(tmp_path, 16, train=False)[0].shape == (3, 30, 50)


def test_builtin_images_are_made_once_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("VMUC_CACHE", str(tmp_path))
    paths = builtin_images()
    assert len(paths) >= 6
    assert all(p.parent == tmp_path / "builtin" for p in paths)
    assert not any(is_reserved(p.name) for p in paths)
    first = {p: p.read_bytes() for p in paths}
    for p in paths:
        assert read_image(p).shape == (256, 256, 3)
    assert builtin_images() == paths
    assert {p: p.read_bytes() for p in paths} == first
    assert ImageFolderDataset(paths)[0].shape == (3, 256, 256)


# --------------------------------------------------------------------------- prepare


def test_reserved_names():
    assert is_reserved("usr/share/backgrounds/mate/nature/Storm.jpg")
    assert is_reserved("usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg")
    assert is_reserved("ColorfulCups")
    assert is_reserved("flower.png")
    assert not is_reserved("sklearn/datasets/images/flower.jpg")
    assert not is_reserved("Stormy.jpg")


def _fake_wallpaper_tree(root):
    """A package tree in the layouts of the real wallpaper packages.

    10 non-reserved pictures can give a 768x512 crop (8 landscape a*, 1 portrait
    p0, 1 KDE-style Kite with a dark variant, a smaller size and a symlink), one is
    too small for anything, and two are reserved (Storm.jpg, FallenLeaf/).
    """
    rng = np.random.default_rng(42)
    bg = root / "usr/share/backgrounds"
    for i in range(8):
        _jpeg(bg / f"a{i}.jpg", _smooth(rng, 840, 560))
    _jpeg(bg / "p0.jpg", _smooth(rng, 560, 840))
    _jpeg(bg / "small.jpg", _smooth(rng, 300, 200))
    _jpeg(bg / "Storm.jpg", _smooth(rng, 840, 560))
    wp = root / "usr/share/wallpapers"
    _jpeg(wp / "FallenLeaf/contents/images/840x560.jpg", _smooth(rng, 840, 560))
    _jpeg(wp / "FallenLeaf/contents/screenshot.jpg", _smooth(rng, 300, 200))
    kite = wp / "Kite/contents"
    _jpeg(kite / "images/840x560.jpg", _smooth(rng, 840, 560))
    _jpeg(kite / "images/640x420.jpg", _smooth(rng, 640, 420))
    os.symlink("840x560.jpg", kite / "images/320x200.jpg")
    _jpeg(kite / "images_dark/840x560.jpg", _smooth(rng, 840, 560))
    _jpeg(kite / "screenshot.jpg", _smooth(rng, 300, 200))


@pytest.fixture(scope="module")
def fake_deb(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    base = tmp_path_factory.mktemp("deb")
    root = base / "pkg"
    _fake_wallpaper_tree(root)
    control = root / "DEBIAN"
    control.mkdir()
    control.chmod(0o755)
    (control / "control").write_text(
        "Package: fake-backgrounds\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test wallpapers\n"
    )
    deb = base / "fake-backgrounds_1.0_all.deb"
    subprocess.run(
        ["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(root), str(deb)],
        check=True, capture_output=True,
    )
    return deb


@pytest.fixture(scope="module")
def prepared(fake_deb, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare(out, [fake_deb], jobs=1, progress=False)


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())["images"]


def test_prepare_splits_and_sizes(prepared):
    out, summary = prepared
    assert summary.counts == {"eval": 2, "reserved": 2, "train": 9}, summary.format()
    evals = sorted(p.name for p in (out / "eval").iterdir())
    assert evals == [
        "fake-backgrounds__a0.png",  # first of the 10 eligible pictures, sorted
        "fake-backgrounds__p0.png",  # the 9th
    ]
    assert read_image(out / "eval/fake-backgrounds__a0.png").shape == (512, 768, 3)
    assert read_image(out / "eval/fake-backgrounds__p0.png").shape == (768, 512, 3)
    trains = sorted(p.name for p in (out / "train").iterdir())
    assert len(trains) == 9
    assert "fake-backgrounds__Kite__images.png" in trains
    assert "fake-backgrounds__Kite__images_dark.png" in trains
    for name in trains:
        # 840x560 downsampled by 2; the 640x420 Kite copy lost to the larger one
        assert read_image(out / "train" / name).shape == (280, 420, 3)
    assert summary.skipped["too small for training after downsampling"] == 1
    assert summary.megapixels["eval"] == pytest.approx(2 * 768 * 512 / 1e6)


def test_reserved_never_reach_train_or_eval(prepared):
    out, _ = prepared
    reserved = sorted(p.name for p in (out / "reserved").iterdir())
    assert reserved == [
        "fake-backgrounds__FallenLeaf__images.png",
        "fake-backgrounds__Storm.png",
    ]
    for name in reserved:
        assert read_image(out / "reserved" / name).shape == (512, 768, 3)
    for entry in _manifest(out):
        if entry["split"] != "reserved":
            assert not is_reserved(entry["source_file"]), entry
            assert "Storm" not in entry["file"] and "FallenLeaf" not in entry["file"]


def test_prepare_rerun_replaces_previous_output(prepared, fake_deb):
    out, _ = prepared
    again = out.parent / "again"
    shutil.copytree(out, again)
    summary = prepare(again, [fake_deb], max_train=3, jobs=1, progress=False)
    assert summary.counts["train"] == 3
    assert len(list((again / "train").iterdir())) == 3
    assert len(list((again / "eval").iterdir())) == 2


def test_command_prints_what_it_built(fake_deb, tmp_path, capsys):
    rc = main(["prepare", str(tmp_path / "out"), "--no-fetch", "--source", str(fake_deb),
               "--jobs", "1"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert re.search(r"train\s+9 images\s+1\.1 MP", printed), printed
    assert re.search(r"eval\s+2 images\s+0\.8 MP", printed), printed
    assert re.search(r"reserved\s+2 images", printed), printed


def test_prepare_from_folder_and_wheel(tmp_path):
    """Folders are treated like unpacked wallpaper packages; wheel images must be
    photographs (RGB, colourful, > 256 px, not a logo) and are kept at their size;
    translucent images are skipped."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "photos"
    _jpeg(folder / "one.jpg", _smooth(rng, 800, 540))
    _jpeg(folder / "two.jpg", _smooth(rng, 800, 540))
    alpha = np.full((540, 800, 1), 255, np.uint8)
    Image.fromarray(np.concatenate([_smooth(rng, 800, 540), alpha], 2)).save(folder / "opaque.png")
    alpha[:270] = 128
    Image.fromarray(np.concatenate([_smooth(rng, 800, 540), alpha], 2)).save(folder / "glass.png")
    whl = tmp_path / "fake_samples-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for name, img in [
            ("fake/data/photo.png", _smooth(rng, 400, 300, noise=8)),
            ("fake/data/logo.png", _smooth(rng, 400, 300, noise=8)),
            ("fake/data/tiny.png", _smooth(rng, 200, 150, noise=8)),
            ("fake/data/grey.png", np.repeat(_smooth(rng, 400, 300)[..., :1], 3, axis=2)),
        ]:
            buf = tmp_path / "tmp.png"
            Image.fromarray(img).save(buf)
            z.write(buf, name)
    out = tmp_path / "out"
    summary = prepare(out, [folder, whl], jobs=1, progress=False)
    assert summary.counts == {"eval": 1, "train": 3}, summary.format()
    assert [p.name for p in (out / "eval").iterdir()] == ["photos__one.png"]
    trains = sorted(p.name for p in (out / "train").iterdir())
    assert trains == [
        "fake-samples__fake__data__photo.png",
        "photos__opaque.png",  # an alpha channel that is opaque everywhere is harmless
        "photos__two.png",
    ]
    assert summary.skipped["transparent"] == 1  # glass.png
    assert read_image(out / "train/fake-samples__fake__data__photo.png").shape == (300, 400, 3)
    assert read_image(out / "train/photos__two.png").shape == (270, 400, 3)
    assert summary.skipped["not a photograph"] == 3


def test_command_fails_clearly_without_sources(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    debs, errors = data.fetch_debs(["mate-backgrounds"], tmp_path)
    assert debs == [] and "apt-get not found" in errors[0]
    assert main(["prepare", str(tmp_path / "out"), "--no-fetch"]) == 1
    assert "no source" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", str(tmp_path / "out"), "--no-fetch", "--source", str(empty)]) == 1
    assert "nothing was built" in capsys.readouterr().err
