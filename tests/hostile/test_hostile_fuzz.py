"""Fuzzing image reading: mutated PNG (8/16-bit, palette, gray, alpha), JPEG, TIFF (raw, LZW,
float), WebP and BMP files. Every one must give a picture or a clean UserError naming the file:
never another exception, never a hang. Seeded, so a failure can be replayed."""
import io
import signal

import numpy as np
import pytest
from PIL import Image

from chromastyle import imaging
from chromastyle.errors import UserError

CASES = 3000         # mutated files per run (a few seconds)
PER_FILE_LIMIT = 20  # seconds; a hang is a failure


def seeds():
    import png

    rng = np.random.default_rng(0)
    rgb = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    out = {}

    def pil(name, im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    pil("rgb.png", Image.fromarray(rgb), "PNG")
    pil("rgba.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"), "PNG")
    pil("palette.png", Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16), "PNG",
        transparency=0)
    pil("gray16.png", Image.fromarray((rng.random((24, 32)) * 65535).astype(np.uint16)), "PNG")
    pil("base.jpg", Image.fromarray(rgb), "JPEG", quality=90)
    pil("progressive.jpg", Image.fromarray(rgb), "JPEG", progressive=True, exif=_exif())
    pil("raw.tif", Image.fromarray(rgb), "TIFF")
    pil("lzw.tif", Image.fromarray(rgb), "TIFF", compression="tiff_lzw")
    pil("float.tif", Image.fromarray(rng.random((24, 32)).astype(np.float32)), "TIFF")
    pil("cmyk.tif", Image.fromarray(rgb).convert("CMYK"), "TIFF")
    pil("lossless.webp", Image.fromarray(rgb), "WEBP", lossless=True)
    pil("rgb.bmp", Image.fromarray(rgb), "BMP")
    for name, planes, alpha in (("rgb16.png", 3, False), ("rgba16.png", 4, True)):
        arr = (rng.random((24, 32, planes)) * 65535).astype(np.uint16)
        buf = io.BytesIO()
        png.Writer(32, 24, bitdepth=16, greyscale=False, alpha=alpha).write(buf, arr.reshape(24, -1))
        out[name] = buf.getvalue()
    return out


def _exif():
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif


def mutate(data, rng):
    data = bytearray(data)
    kind = rng.integers(8)
    n = len(data)
    if kind == 0:                                   # flip a few bits
        for _ in range(rng.integers(1, 10)):
            data[rng.integers(n)] ^= 1 << int(rng.integers(8))
    elif kind == 1:                                 # overwrite bytes
        for _ in range(rng.integers(1, 20)):
            data[rng.integers(n)] = int(rng.integers(256))
    elif kind == 2:                                 # truncate
        data = data[:rng.integers(1, n)]
    elif kind == 3:                                 # repeat a slice
        a = int(rng.integers(n))
        data[a:a] = data[a:a + int(rng.integers(1, 200))]
    elif kind == 4:                                 # insert random bytes
        a = int(rng.integers(n))
        data[a:a] = rng.bytes(int(rng.integers(1, 64)))
    elif kind == 5:                                 # delete a slice
        a = int(rng.integers(n))
        del data[a:a + int(rng.integers(1, 200))]
    elif kind == 6:                                 # a huge 16- or 32-bit field in the first bytes (sizes, counts)
        a = int(rng.integers(min(n - 4, 64)))
        data[a:a + 4] = bytes(rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\xff\xff",
                                          b"\xff\xff\x00\x00", b"\x00\x01\x00\x00"]))
    else:                                           # zero a range
        a = int(rng.integers(n))
        data[a:a + int(rng.integers(1, 100))] = bytes(min(n - a, int(rng.integers(1, 100))))
    return bytes(data)


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


@pytest.mark.filterwarnings("ignore::UserWarning")   # Pillow warns about much of what it is fed here
def test_mutated_images_never_crash_or_hang(tmp_path):
    corpus = seeds()
    names = sorted(corpus)
    rng = np.random.default_rng(2024)
    outcome = {"picture": 0, "error": 0}
    failures = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(CASES):
            name = names[i % len(names)]
            data = mutate(corpus[name], rng)
            if rng.random() < 0.3:      # some files get a second mutation
                data = mutate(data, rng)
            path = tmp_path / f"case{i}_{name}"
            path.write_bytes(data)
            signal.setitimer(signal.ITIMER_REAL, PER_FILE_LIMIT)
            try:
                pic = imaging.read_image(path, max_pixels=4_000_000)
                assert pic.rgb.ndim == 3 and pic.rgb.shape[2] == 3 and pic.rgb.dtype == np.float32
                outcome["picture"] += 1
                path.unlink()
            except UserError as e:
                assert path.name in str(e)
                outcome["error"] += 1
                path.unlink()
            except Hang:
                failures.append(f"{path.name}: still reading after {PER_FILE_LIMIT} s")
            except Exception as e:  # noqa: BLE001 — this is what the test looks for
                failures.append(f"{path.name}: {type(e).__name__}: {e}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    print(f"fuzzed {CASES} files: {outcome['picture']} pictures, {outcome['error']} clean errors, "
          f"{len(failures)} failures")
    assert not failures, "\n".join(failures[:20])
    assert outcome["picture"] > 0 and outcome["error"] > 0   # both paths were exercised


@pytest.mark.parametrize("name", sorted(seeds()))
def test_every_seed_reads(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(seeds()[name])
    pic = imaging.read_image(path)
    assert pic.size in ((32, 24), (24, 32))
