"""codec.data.sampler: the one training crop sampler, in memory and streamed.

The property that keeps resume exact: for the same generator, every sampler returns the
same batch, and the batch is the one codec.train.ImagePool returned.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from codec.data import (
    CropSampler,
    DataError,
    ImageFolderDataset,
    StreamingCropSampler,
    builtin_images,
    make_sampler,
)
from codec.image import read_image, write_png


class OldImagePool:
    """codec.train.ImagePool as it was when the samplers replaced it (copied verbatim,
    from_folder included), the reference the batches must keep matching."""

    def __init__(self, images, crop_size):
        self.crop_size = int(crop_size)
        self.images = []
        for img in images:
            u8 = (img.clamp(0, 1) * 255).round().to(torch.uint8)
            h, w = u8.shape[-2:]
            if h < crop_size or w < crop_size:
                u8 = F.pad(u8[None].float(), (0, max(0, crop_size - w), 0, max(0, crop_size - h)),
                           mode="replicate")[0].to(torch.uint8)
            self.images.append(u8)

    @classmethod
    def from_folder(cls, folder, crop_size):
        ds = ImageFolderDataset(folder if folder else builtin_images(), crop_size, train=False)
        return cls([ds[i] for i in range(len(ds))], crop_size)

    def sample(self, batch_size, generator):
        c = self.crop_size
        out = []
        for _ in range(batch_size):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=generator))]
            h, w = img.shape[-2:]
            top = int(torch.randint(h - c + 1, (1,), generator=generator))
            left = int(torch.randint(w - c + 1, (1,), generator=generator))
            crop = img[:, top:top + c, left:left + c]
            if bool(torch.randint(2, (1,), generator=generator)):
                crop = crop.flip(-1)
            out.append(crop)
        return torch.stack(out).float() / 255.0


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _smooth(rng, w, h):
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    return np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)


def _jpeg_with_orientation(path, rgb, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, quality=92, exif=exif)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Mixed training folder: PNG and JPEG, landscape and portrait, one image smaller
    than the crop on both sides, one narrower only, a greyscale PNG, and a JPEG stored
    40 wide x 24 high with EXIF orientation 6 (displayed 24 wide x 40 high)."""
    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(3)
    write_png(root / "a_land.png", _smooth(rng, 70, 45))
    write_png(root / "b_port.png", _smooth(rng, 33, 61))
    write_png(root / "c_tiny.png", _smooth(rng, 9, 13))
    write_png(root / "d_narrow.png", _smooth(rng, 20, 50))
    Image.fromarray(_smooth(rng, 48, 40)[..., 0]).save(root / "e_grey.png")
    Image.fromarray(_smooth(rng, 64, 36)).save(root / "f_photo.jpg", quality=90)
    _jpeg_with_orientation(root / "g_rotated.jpg", _smooth(rng, 40, 24), 6)
    return root


CROP = 32


# --------------------------------------------------------------------------- memory == old ImagePool


@pytest.mark.parametrize("crop", [96, 300])  # 300 > the 256x256 built-in images: padded
def test_memory_sampler_gives_the_old_image_pool_batches_on_the_builtin_images(crop):
    old = OldImagePool.from_folder(None, crop)
    new = make_sampler({"train_dir": None, "crop_size": crop})
    assert isinstance(new, CropSampler) and len(new) == len(old.images) >= 6
    for seed in (0, 1, 12345):
        g_old, g_new = _gen(seed), _gen(seed)
        for batch in (1, 3, 4):
            a, b = old.sample(batch, g_old), new.sample(batch, g_new)
            assert b.dtype == torch.float32 and b.shape == (batch, 3, crop, crop) and b.is_contiguous()
            assert torch.equal(a, b)
        # the generators were advanced alike: the next draw agrees too
        assert torch.equal(torch.rand(3, generator=g_old), torch.rand(3, generator=g_new))


def test_memory_sampler_gives_the_old_image_pool_batches_on_a_mixed_folder(folder):
    old = OldImagePool.from_folder(str(folder), CROP)
    new = make_sampler({"train_dir": str(folder), "crop_size": CROP})
    for seed in range(5):
        assert torch.equal(old.sample(8, _gen(seed)), new.sample(8, _gen(seed)))


def test_images_smaller_than_the_crop_are_replicate_padded(folder):
    tiny = read_image(folder / "c_tiny.png")  # 13 high, 9 wide
    s = CropSampler([tiny], CROP)
    assert s.sizes == [(CROP, CROP)]
    x = s.sample(4, _gen(0))
    assert x.shape == (4, 3, CROP, CROP)
    ref = torch.from_numpy(np.pad(tiny, ((0, CROP - 13), (0, CROP - 9), (0, 0)), mode="edge"))
    ref = ref.permute(2, 0, 1).float() / 255.0
    for crop in x:  # the only possible crop is the whole padded image, maybe flipped
        assert torch.equal(crop, ref) or torch.equal(crop, ref.flip(-1))
    # the bottom rows and right columns repeat the last real row / column
    assert torch.equal(ref[:, 13:, :], ref[:, 12:13, :].expand(3, CROP - 13, CROP))
    assert torch.equal(ref[:, :, 9:], ref[:, :, 8:9].expand(3, CROP, CROP - 9))
    # in a larger image, a crop is a real window of it
    big = read_image(folder / "a_land.png")
    y = (CropSampler([big], CROP).sample(1, _gen(5))[0].permute(1, 2, 0) * 255).round().byte().numpy()
    hits = [(t, left) for t in range(45 - CROP + 1) for left in range(70 - CROP + 1)
            for window in (big[t:t + CROP, left:left + CROP],) if np.array_equal(window, y)
            or np.array_equal(window[:, ::-1], y)]
    assert hits


def test_memory_sampler_accepts_arrays_and_uint8_or_float_tensors(folder):
    rgb = read_image(folder / "a_land.png")
    u8 = torch.from_numpy(rgb).permute(2, 0, 1)
    batches = [CropSampler([im], CROP).sample(5, _gen(1)) for im in (rgb, u8, u8.float() / 255)]
    assert torch.equal(batches[0], batches[1]) and torch.equal(batches[0], batches[2])
    with pytest.raises(DataError, match="no training images"):
        CropSampler([], CROP)
    with pytest.raises(ValueError, match="crop_size"):
        CropSampler([rgb], 0)
    with pytest.raises(ValueError, match="batch_size"):
        CropSampler([rgb], CROP).sample(0, _gen(0))


# --------------------------------------------------------------------------- streaming == memory


def _assert_same_batches(memory, stream, seeds=range(6), batch=7):
    assert stream.sizes == memory.sizes
    for seed in seeds:
        a, b = memory.sample(batch, _gen(seed)), stream.sample(batch, _gen(seed))
        assert b.dtype == torch.float32 and b.shape == (batch, 3, CROP, CROP)
        assert b.is_contiguous() and b.stride() == a.stride()
        assert torch.equal(a, b), f"seed {seed}"


def test_streaming_equals_memory_in_process(folder):
    memory = make_sampler({"train_dir": str(folder), "crop_size": CROP})
    stream = make_sampler({"train_dir": str(folder), "crop_size": CROP, "sampler": "stream"})
    assert isinstance(stream, StreamingCropSampler) and stream.workers == 0
    with stream:
        _assert_same_batches(memory, stream)
        # one generator across many steps, as a run that reuses it would
        g_mem, g_str = _gen(99), _gen(99)
        for _ in range(3):
            assert torch.equal(memory.sample(5, g_mem), stream.sample(5, g_str))


def test_streaming_equals_memory_with_two_workers_and_shuts_them_down(folder):
    memory = make_sampler({"train_dir": str(folder), "crop_size": CROP})
    with make_sampler({"train_dir": str(folder), "crop_size": CROP, "sampler": "stream", "workers": 2}) as stream:
        assert stream.workers == 2
        _assert_same_batches(memory, stream, seeds=range(3), batch=9)
        procs = list(stream._pool._processes.values())
        assert len(procs) == 2 and all(p.is_alive() for p in procs)
    for p in procs:  # __exit__ closed the pool and joined its processes
        p.join(timeout=10)
        assert not p.is_alive()
    stream.close()  # twice is fine
    with pytest.raises(RuntimeError, match="close"):
        stream.sample(1, _gen(0))


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_streaming_sizes_follow_exif_orientation(tmp_path, fmt):
    path = tmp_path / f"rotated.{fmt}"
    rgb = _smooth(np.random.default_rng(6), 40, 24)
    if fmt == "jpg":
        _jpeg_with_orientation(path, rgb, 6)
    else:
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(rgb).save(path, exif=exif)
    with Image.open(path) as im:
        assert im.size == (40, 24)  # stored 40 wide, 24 high
    assert read_image(path).shape == (40, 24, 3)  # displayed 24 wide, 40 high
    stream = StreamingCropSampler([path], 16)
    assert stream.sizes == [(40, 24)]
    memory = CropSampler.from_paths([path], 16)
    assert memory.sizes == [(40, 24)]
    for seed in range(8):  # top in 0..24, left in 0..8: wrong sizes would misdraw or fail
        assert torch.equal(memory.sample(3, _gen(seed)), stream.sample(3, _gen(seed)))


def test_streaming_sampler_is_built_from_headers_without_decoding(folder, monkeypatch):
    """Building it must not decode the training set (Pillow's getexif() would decode
    every PNG); the sizes still match the decoded images."""
    from PIL import ImageFile

    sizes = [read_image(p).shape[:2] for p in sorted(folder.iterdir())]

    def no_decoding(self):
        raise AssertionError(f"decoded {self.filename} while building the sampler")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    stream = StreamingCropSampler.from_folder(folder, 8)
    assert stream._raw_sizes == [tuple(s) for s in sizes]


def test_worker_processes_do_not_outlive_an_unclosed_sampler(folder, tmp_path):
    """A script that forgets close() still exits promptly, leaving no worker behind."""
    script = tmp_path / "forget.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        from codec.data import make_sampler

        if __name__ == "__main__":  # spawned workers import this file again
            s = make_sampler({{"train_dir": {str(folder)!r}, "crop_size": 16, "sampler": "stream", "workers": 2}})
            s.sample(4, torch.Generator().manual_seed(0))
            print(*[p.pid for p in s._pool._processes.values()], flush=True)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    pids = [int(p) for p in r.stdout.split()]
    assert len(pids) == 2
    for pid in pids:
        try:
            waited = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("ps not available")
        assert waited.stdout.strip() in ("", "Z"), f"worker {pid} still running"


# --------------------------------------------------------------------------- errors


@pytest.fixture
def corrupt_folder(tmp_path):
    """One good PNG and a JPEG whose header is fine but whose pixel data is cut short:
    it passes every construction-time check and fails only when decoded."""
    rng = np.random.default_rng(4)
    write_png(tmp_path / "good.png", _smooth(rng, 40, 40))
    Image.fromarray(_smooth(rng, 64, 64)).save(tmp_path / "bad.jpg", quality=90)
    data = (tmp_path / "bad.jpg").read_bytes()
    (tmp_path / "bad.jpg").write_bytes(data[: len(data) // 2])
    return tmp_path


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_file_in_streaming_mode_is_a_data_error_naming_it(corrupt_folder, workers):
    cfg = {"train_dir": str(corrupt_folder), "crop_size": 16, "sampler": "stream", "workers": workers}
    with make_sampler(cfg) as stream:  # headers are fine: no error yet
        assert [p.name for p in stream.paths] == ["bad.jpg", "good.png"]
        with pytest.raises(DataError, match=r"bad\.jpg.*no other image is substituted"):
            stream.sample(8, _gen(0))


def test_a_corrupt_file_in_memory_mode_is_a_data_error_naming_it(corrupt_folder):
    with pytest.raises(DataError, match=r"bad\.jpg"):
        make_sampler({"train_dir": str(corrupt_folder), "crop_size": 16})


def test_a_truncated_png_in_streaming_mode_is_caught_when_the_sampler_is_built(tmp_path):
    """The PNG chunk walk that replaces a full decode at construction cannot finish on
    a truncated PNG and hands over to Pillow, which fails: an early DataError naming it."""
    rng = np.random.default_rng(5)
    write_png(tmp_path / "good.png", _smooth(rng, 40, 40))
    write_png(tmp_path / "cut.png", _smooth(rng, 64, 64))
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png"):
        make_sampler({"train_dir": str(tmp_path), "crop_size": 16, "sampler": "stream"})


def test_a_file_changed_during_training_is_a_data_error(folder, tmp_path):
    path = tmp_path / "x.png"
    write_png(path, read_image(folder / "a_land.png"))
    stream = StreamingCropSampler([path], 16)
    write_png(path, read_image(folder / "b_port.png"))
    with pytest.raises(DataError, match=r"x\.png.*changed"):
        stream.sample(2, _gen(0))


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"sampler": "disk"}, r"data\.sampler='disk': use 'memory' .* or 'stream'"),
        ({"sampler": None}, r"data\.sampler=None"),
        ({"sampler": "stream", "workers": -1}, r"data\.workers=-1: use an integer >= 0"),
        ({"sampler": "stream", "workers": "2"}, r"data\.workers='2'"),
        ({"sampler": "memory", "workers": 2}, r"data\.workers=2 is for data\.sampler=stream"),
        ({"crop_size": 0}, r"data\.crop_size=0"),
        ({"crop_size": None}, r"data\.crop_size=None"),
    ],
)
def test_bad_config_values_are_value_errors_naming_the_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        make_sampler({"train_dir": None, "crop_size": 16, **cfg})


def test_make_sampler_reads_an_omegaconf_node_with_the_shipped_defaults(folder):
    import conf
    from omegaconf import OmegaConf

    node = OmegaConf.load(Path(conf.__file__).parent / "data" / "default.yaml")
    assert node.sampler == "memory" and node.workers == 0
    node.train_dir, node.crop_size = str(folder), CROP
    OmegaConf.set_struct(node, True)
    assert isinstance(make_sampler(node), CropSampler)
    node.sampler, node.workers = "stream", 0
    assert isinstance(make_sampler(node), StreamingCropSampler)
