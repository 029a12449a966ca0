"""Screenshots of the plug-ins in the real hosts for the docs (run by hand, not a test):

    python tests/hosts/screenshots.py gimp|krita OUT.png

GIMP: the plug-in's dialog, opened interactively by a batch script in the GUI GIMP under Xvfb.
Krita: the main window after colorizing a gray photo on the first run, with the Chromastyle docker,
grabbed by Qt inside Krita."""
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hosts.chroot import chroot_shell  # noqa: E402
from hosts.gimp import gimp_root  # noqa: E402

from chromastyle import install  # noqa: E402


def read_xwd(path):
    data = Path(path).read_bytes()
    hdr = struct.unpack(">25I", data[:100])
    header_size, width, height, bpp, bytes_per_line, ncolors = hdr[0], hdr[4], hdr[5], hdr[11], hdr[12], hdr[19]
    offset = header_size + ncolors * 12
    px = np.frombuffer(data[offset:offset + bytes_per_line * height], np.uint8).reshape(height, bytes_per_line)
    px = px[:, :width * bpp // 8].reshape(height, width, bpp // 8)
    return px[..., [2, 1, 0]]


def crop_to_content(img, background=None):
    bg = img[0, 0] if background is None else background
    mask = (np.abs(img.astype(int) - bg).sum(-1) > 0)
    ys, xs = np.nonzero(mask)
    return img[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else img


def start_worker(state):
    proc = subprocess.Popen([sys.executable, "-m", "chromastyle", "serve", "--state-file", str(state)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not state.exists():
        time.sleep(0.1)
    return proc


def gimp(out):
    root = gimp_root()
    work = Path(tempfile.mkdtemp(prefix="shot-"))
    install.install_gimp(work / "plug-ins")
    Image.open(HERE.parents[1] / "core/chromastyle/samples/astronaut_gray.png").save(work / "photo.png")
    fb = work / "fb"
    fb.mkdir()
    worker = start_worker(work / "state" / "worker.json")
    xvfb = subprocess.Popen(["Xvfb", ":77", "-screen", "0", "900x700x24", "-fbdir", str(fb), "-nolisten", "tcp"])
    script = work / "open_dialog.py"
    script.write_text(f'''
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{work}/photo.png"))
proc = Gimp.get_pdb().lookup_procedure("plug-in-chromastyle")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", image)
cfg.set_core_object_array("drawables", image.get_layers())
proc.run(cfg)
''')
    profile = work / "gimp-profile"
    profile.mkdir()
    (profile / "gimprc").write_text(f'(plug-in-path "${{gimp_plug_in_dir}}/plug-ins:{work / "plug-ins"}")\n')
    envs = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", "DISPLAY": ":77",
            "GIMP3_DIRECTORY": str(profile), "CHROMASTYLE_STATE_FILE": f"{work}/state/worker.json"}
    cmd = chroot_shell(root, envs, f"gimp-3.0 -n -d -f -s --batch-interpreter=python-fu-eval "
                       f"-b 'exec(open(\"{script}\").read())'", rw=[work], x11=True)
    gimp_proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(40)
        shot = read_xwd(fb / "Xvfb_screen0")
        Image.fromarray(crop_to_content(shot)[12:548, :428]).save(out)   # the dialog, at the top left
    finally:
        os.killpg(gimp_proc.pid, signal.SIGKILL)
        xvfb.terminate()
        worker.terminate()
    print(out)


def krita(out, style="natural"):
    """The first run on a gray photo, as an artist meets it: no worker running, the plug-in starts it,
    colorizes the layer and the document becomes RGB; then the window is grabbed."""
    from hosts.krita import run_krita, stop_worker
    work = Path(tempfile.mkdtemp(prefix="shot-"))
    try:
        params = {"width": 512, "height": 512, "screenshot": str(Path(out).resolve()),
                  "image": str(HERE.parents[1] / "core/chromastyle/samples/astronaut_gray.png"), "scenarios": [],
                  "settings": {"style": style}}
        r, result = run_krita(work, params, timeout=180)
        print(result, r.stderr[-500:] if not result else "")
    finally:
        stop_worker(work / "runtime")


if __name__ == "__main__":
    {"gimp": gimp, "krita": krita}[sys.argv[1]](*sys.argv[2:])
