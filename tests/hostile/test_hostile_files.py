"""Hostile files and file systems for `run` and `batch`: outputs that collide, outputs that
cannot be written, inputs that are not files, broken 16-bit PNGs, decompression bombs, resumed
runs over broken outputs, and a batch whose process is killed. Each problem is one line naming
the file, the other files of the run are still processed, and the exit code is 1."""
import io
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromastyle import imaging
from chromastyle.errors import UserError
from hostile import cli, unprivileged


def save(path, arr=None, size=(40, 30), seed=0, **kw):
    if arr is None:
        arr = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path, **kw)
    return path


def png16(width=40, height=30, seed=1):
    import png

    arr = (np.random.default_rng(seed).random((height, width, 3)) * 65535).astype(np.uint16)
    buf = io.BytesIO()
    png.Writer(width, height, bitdepth=16, greyscale=False).write(buf, arr.reshape(height, -1))
    return buf.getvalue()


def chunk(kind, data, crc=None):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) if crc is None else crc)


def png_header(width, height, depth=8, color=0):
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))


def bomb(width, height):
    """A small PNG whose header promises width × height pixels."""
    return png_header(width, height, 1) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def no_traceback(result):
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    return result


def listing(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


# -- 3. results silently lost ----------------------------------------------------------------------------

@pytest.mark.parametrize("names", [("shot.jpg", "shot.png"), ("Shot.png", "shot.PNG"), ("a.png", "a.png"),
                                   ("x.webp", "x.bmp", "y.png")])
def test_run_refuses_colliding_outputs_before_starting(tmp_path, names):
    inputs = []
    for name in names:
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            save(path, format="PNG")
        inputs.append(path)
    r = no_traceback(cli("run", *inputs, "-o", tmp_path / "out"))
    assert r.returncode == 1 and "would both write" in r.stderr
    assert listing(tmp_path / "out") == []


def test_batch_refuses_colliding_outputs_before_starting(tmp_path):
    (tmp_path / "in").mkdir()
    save(tmp_path / "in" / "plate.png")
    save(tmp_path / "in" / "plate.jpg")
    save(tmp_path / "in" / "other.png")
    r = no_traceback(cli("batch", tmp_path / "in", "-o", tmp_path / "out"))
    assert r.returncode == 1 and "plate.jpg" in r.stderr and "plate.png" in r.stderr
    assert listing(tmp_path / "out") == []


def test_resume_redoes_empty_truncated_and_wrong_outputs(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(5):
        save(tmp_path / "in" / f"f_{i}.png", seed=i)
    out = tmp_path / "out"
    assert cli("batch", tmp_path / "in", "-o", out).returncode == 0
    good = (out / "f_0.png").stat().st_mtime_ns
    (out / "f_1.png").write_bytes(b"")                                           # empty
    (out / "f_2.png").write_bytes((out / "f_2.png").read_bytes()[:300])          # truncated
    save(out / "f_3.png", size=(10, 10))                                         # another picture
    (out / "f_4.png").unlink()
    (out / "f_4.png").mkdir()                                                    # a folder in the way
    r = no_traceback(cli("batch", tmp_path / "in", "-o", out, "--resume"))
    assert r.returncode == 1, r.stderr                          # f_4's output cannot be written
    assert "3 written, 1 already done, 1 failed" in r.stdout
    for name in ("f_1.png", "f_2.png", "f_3.png"):
        assert f"processed again: {tmp_path / 'in' / name}" in r.stderr
        assert imaging.read_image(out / name).size == (40, 30)
    assert "f_4.png" in r.stderr and "folder" in r.stderr
    assert (out / "f_0.png").stat().st_mtime_ns == good
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# -- 4. write errors: one line each, the rest still processed ----------------------------------------------

def test_parent_is_a_file(tmp_path):
    src = save(tmp_path / "a.png")
    (tmp_path / "blocker").write_text("x")
    r = no_traceback(cli("run", src, "-o", tmp_path / "blocker" / "deeper" / "x.png"))
    assert r.returncode == 1 and "blocker is a file, not a folder" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_output_is_a_folder_and_the_other_file_is_written(tmp_path):
    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png", seed=2)
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    r = no_traceback(cli("run", a, b, "-o", tmp_path / "out"))
    assert r.returncode == 1 and "a folder of that name is in the way" in r.stderr
    assert imaging.read_image(tmp_path / "out" / "b.png").size == (40, 30)


def test_no_permission_to_write(tmp_path):
    a, b = save(tmp_path / "a.png"), save(tmp_path / "b.png", seed=3)
    ro = tmp_path / "readonly"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        r = no_traceback(cli("run", a, b, "-o", ro, preexec_fn=unprivileged()))
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("Permission denied") == 2 and "a.png" in r.stderr and "b.png" in r.stderr
        assert listing(ro) == []
        r = no_traceback(cli("run", a, "-o", ro / "sub" / "x.png", preexec_fn=unprivileged()))
        assert r.returncode == 1 and "Permission denied" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        os.chmod(ro, 0o755)


def limit_file_size(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write fails with EFBIG instead of killing
    return apply


def test_full_disk_loses_nothing_else(tmp_path):
    """The file-size limit makes a write fail midway, as a full disk does (EFBIG instead of ENOSPC)."""
    small = save(tmp_path / "small.png", size=(16, 16))
    big = save(tmp_path / "big.png", size=(400, 300), seed=9)
    out = tmp_path / "out"
    r = no_traceback(cli("run", big, small, "-o", out, preexec_fn=limit_file_size(150_000)))
    assert r.returncode == 1 and "big.png" in r.stderr and "File too large" in r.stderr
    assert listing(out) == ["small.png"]   # no partial big.png, no temp file


# -- 4. inputs that are not images, or not files -------------------------------------------------------------

def broken_16bit_pngs():
    good = png16()
    idat_at = 33
    n = struct.unpack(">I", good[idat_at:idat_at + 4])[0]
    idat = good[idat_at + 8:idat_at + 8 + n]
    head, tail = good[:idat_at], good[idat_at + 12 + n:]
    corrupt_zlib = bytearray(idat)
    corrupt_zlib[len(idat) // 2:len(idat) // 2 + 8] = b"\xff" * 8
    return {
        "cut in the IDAT": good[:len(good) // 2],
        "cut before IEND": good[:-12],
        "cut in a CRC": good[:idat_at + 8 + n + 2],
        "bad IDAT CRC": head + chunk(b"IDAT", idat, crc=0) + tail,
        "bad IHDR CRC": good[:29] + b"\0\0\0\0" + good[33:],
        "corrupt zlib": head + chunk(b"IDAT", bytes(corrupt_zlib)) + tail,
        "short zlib stream": head + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + tail,
        "long zlib stream": head + chunk(b"IDAT", zlib.compress(b"\0" * 100_000)) + tail,
        "no IDAT": head + tail,
        "chunk length past the end": head + struct.pack(">I", 10 ** 9) + b"IDAT" + idat[:50],
        "bad filter byte": head + chunk(b"IDAT", zlib.compress(b"\x09" * (1 + 40 * 6) * 30)) + tail,
    }


@pytest.mark.parametrize("name", list(broken_16bit_pngs()))
def test_broken_16bit_png_is_a_clear_error(tmp_path, name):
    path = tmp_path / "x.png"
    path.write_bytes(broken_16bit_pngs()[name])
    try:
        pic = imaging.read_image(path)
        assert pic.rgb.shape == (30, 40, 3)   # some damage is harmless (a missing IEND, extra data)
    except UserError as e:
        assert "x.png" in str(e)


def test_run_goes_on_after_broken_and_odd_inputs(tmp_path):
    """The probe's list in one run: 16-bit PNGs with every pypng error, a FIFO (it used to hang),
    /dev/zero (read to the end before any size check), a folder, a bomb; the good file is written."""
    inputs = []
    for i, data in enumerate(broken_16bit_pngs().values()):
        inputs.append(tmp_path / f"broken16_{i}.png")
        inputs[-1].write_bytes(data)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    (tmp_path / "bomb.png").write_bytes(bomb(100_000, 100_000))
    good = save(tmp_path / "good.png")
    inputs += [fifo, Path("/dev/zero"), folder, tmp_path / "bomb.png", tmp_path / "missing.png", good]
    r = no_traceback(cli("run", *inputs, "-o", tmp_path / "out", timeout=240))
    assert r.returncode == 1
    assert "good.png" in listing(tmp_path / "out")
    failed = [line for line in r.stderr.splitlines() if line.startswith("chromastyle: failed:")]
    named = {line.split(": ")[2] for line in failed}
    for p in (fifo, Path("/dev/zero"), folder, tmp_path / "bomb.png", tmp_path / "missing.png"):
        assert str(p) in named, r.stderr
    assert "not a regular file" in r.stderr and "--max-pixels" in r.stderr


def test_batch_with_a_fifo_frame_finishes(tmp_path):
    (tmp_path / "in").mkdir()
    save(tmp_path / "in" / "f_1.png")
    os.mkfifo(tmp_path / "in" / "f_2.png")
    save(tmp_path / "in" / "f_3.png", seed=4)
    r = no_traceback(cli("batch", tmp_path / "in", "-o", tmp_path / "out", timeout=240))
    assert r.returncode == 1 and "2 written, 0 already done, 1 failed" in r.stdout and "f_2.png" in r.stderr


@pytest.mark.parametrize("size", [(100_000, 100_000), (20_000, 20_000), (30_000, 4_000)])
def test_decompression_bomb_hint_file(tmp_path, size):
    src = save(tmp_path / "a.png")
    (tmp_path / "hints.png").write_bytes(bomb(*size))
    r = no_traceback(cli("run", src, "-o", tmp_path / "o.png", "--hints", tmp_path / "hints.png"))
    assert r.returncode == 1 and "hints.png" in r.stderr
    assert not (tmp_path / "o.png").exists()


# -- 5. --max-pixels means what it says ----------------------------------------------------------------------

def test_max_pixels_replaces_pillows_own_limit(tmp_path):
    """A trusted 90 MP image (above Pillow's 89.5 MP) reads with --max-pixels 200000000."""
    path = tmp_path / "big.png"
    Image.new("1", (9500, 9500)).save(path)
    saved = Image.MAX_IMAGE_PIXELS
    with imaging.open_image(path, max_pixels=200_000_000) as (im, _):
        im.load()
        assert im.size == (9500, 9500)
    assert Image.MAX_IMAGE_PIXELS == saved   # Pillow's limit is back for everyone else
    with pytest.raises(UserError, match=r"90,250,000 pixels, above the limit of 50,000,000 \(--max-pixels"):
        imaging.read_image(path, max_pixels=50_000_000)


def test_bomb_message_names_the_option(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb(20_000, 20_000))   # twice Pillow's limit: it used to raise its own error
    r = no_traceback(cli("run", tmp_path / "bomb.png", "-o", tmp_path / "o.png"))
    assert r.returncode == 1 and "--max-pixels" in r.stderr and "400,000,000" in r.stderr


# -- 9. a killed batch takes its pool with it ------------------------------------------------------------------

def children(pid):
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid):
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_batch_leaves_no_pool_processes(tmp_path, sig):
    (tmp_path / "in").mkdir()
    for i in range(60):
        save(tmp_path / "in" / f"f_{i}.png", size=(320, 240), seed=i)
    proc = subprocess.Popen([sys.executable, "-m", "chromastyle", "batch", str(tmp_path / "in"), "-o",
                             str(tmp_path / "out"), "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    pool = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (len(listing(tmp_path / "out")) >= 2 and len(pool) >= 2):
            pool = children(proc.pid)
            time.sleep(0.2)
        assert len(pool) >= 2 and proc.poll() is None, "the pool did not start working"
        os.kill(proc.pid, sig)
        proc.wait(30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(alive(p) for p in pool):
            time.sleep(0.2)
        assert not [p for p in pool if alive(p)], "pool processes outlived the batch"
    finally:
        for p in [proc.pid, *pool]:
            if alive(p):
                os.kill(p, signal.SIGKILL)
