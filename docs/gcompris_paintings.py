"""Reassemble paintings from the jigsaw pieces of GCompris's "paintings" activity.

Debian's `gcompris-qt-data` (3.1-2) holds faithful scans of public-domain paintings, cut into pieces
with their places on the board. `docs/images/style_pictures/` (paintings no run trains on) and the
extra style bank of model 2.6.0 (`chromastyle train style --bank-extra DIR`) come from it.

    apt-get download gcompris-qt-data
    python docs/gcompris_paintings.py gcompris-qt-data_3.1-2_all.deb -o DIR 3 5 19 21

Boards (the activity's numbering): 2 Arcimboldo, Spring; 3 Arcimboldo, The Librarian; 4 Hokusai,
Oiran and Kamuro; 5 Hokusai, Woman Holding a Fan; 11 Hokusai, Poppies; 14 Leonardo, Mona Lisa;
15 Bellini, Pesaro Altarpiece; 18 Renoir, Girls at the Piano; 19 Kandinsky, Composition VIII;
21 Cassatt, Summertime. The other boards are named styles already or not paintings.
"""
import argparse
import io
import re
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ACTIVITY = "gcompris/src/activities/paintings/resource/"
BOARD = (702, 515)   # the size the pieces' places are fractions of


def read_rcc(data):
    """{path: bytes} of a compiled Qt resource file (format 1-3; zlib-compressed entries)."""
    assert data[:4] == b"qres", "not a Qt resource file"
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    entry = 22 if version >= 2 else 14
    files = {}

    def name(offset):
        length, = struct.unpack(">H", data[names + offset:names + offset + 2])
        return data[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(i, prefix):
        at = tree + i * entry
        name_offset, flags = struct.unpack(">IH", data[at:at + 6])
        path = f"{prefix}{name(name_offset)}" if i else ""
        if flags & 2:   # a directory
            count, first = struct.unpack(">II", data[at + 6:at + 14])
            for j in range(count):
                walk(first + j, f"{path}/" if path else "")
            return
        offset, = struct.unpack(">I", data[at + 10:at + 14])
        size, = struct.unpack(">I", data[payload + offset:payload + offset + 4])
        blob = data[payload + offset + 4:payload + offset + 4 + size]
        files[path] = zlib.decompress(blob[4:]) if flags & 1 else blob

    walk(0, "")
    return files


def assemble(files, board):
    """The painting of ``board``: its pieces (RGBA, jigsaw edges) pasted at their centres, at the
    scale where they tile best, cropped to the filled rectangle."""
    qml = files[f"{ACTIVITY}board/board{board}_0.qml"].decode()
    title = re.search(r'instruction: qsTr\("([^"]+)"', qml).group(1)
    places = re.findall(r'"pixmapfile"\s*:\s*"(image/[^"]+)"\s*,\s*"x"\s*:\s*"([\d.]+)"\s*,\s*"y"\s*:\s*"([\d.]+)"', qml)
    pieces = [(np.asarray(Image.open(io.BytesIO(files[ACTIVITY + f])).convert("RGBA"), np.float64) / 255,
               float(x), float(y)) for f, x, y in places]

    def paste(scale):
        w, h = int(BOARD[0] * scale), int(BOARD[1] * scale)
        color, cover = np.zeros((h, w, 3)), np.zeros((h, w))
        for rgba, x, y in pieces:
            ph, pw = rgba.shape[:2]
            x0, y0 = int(round(x * w - pw / 2)), int(round(y * h - ph / 2))
            ys, xs = slice(max(y0, 0), min(y0 + ph, h)), slice(max(x0, 0), min(x0 + pw, w))
            part = rgba[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
            color[ys, xs] += part[..., :3] * part[..., 3:]
            cover[ys, xs] += part[..., 3]
        ys, xs = np.nonzero(cover > 0.5)
        box = (slice(ys.min() + 2, ys.max() - 1), slice(xs.min() + 2, xs.max() - 1))
        return color[box], cover[box]

    # pieces overlap or leave gaps unless the board is at the scale they were cut for
    scale = min(np.arange(0.6, 2.5, 0.01), key=lambda s: np.mean(np.abs(paste(s)[1] - 1) > 0.5))
    color, cover = paste(scale)
    rgb = color / np.maximum(cover, 1e-6)[..., None]
    return Image.fromarray((rgb.clip(0, 1) * 255).round().astype(np.uint8)), title


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("deb", type=Path, help="gcompris-qt-data_*.deb")
    ap.add_argument("boards", type=int, nargs="+")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(args.deb), tmp], check=True)
        files = read_rcc((Path(tmp) / "usr/share/gcompris-qt/rcc/paintings.rcc").read_bytes())
    args.out.mkdir(parents=True, exist_ok=True)
    for board in args.boards:
        img, title = assemble(files, board)
        slug = re.sub(r"[^a-z0-9]+", "_", title.split(" - ")[0].lower()).strip("_")
        img.save(args.out / f"board{board:02d}_{slug}.jpg", quality=95)
        print(f"board {board}: {title} -> {img.size[0]}x{img.size[1]}")


if __name__ == "__main__":
    main()
