"""Regenerates the README's figures from the shipped model:
    python docs/make_figures.py

before_after.png — top row: the gray sample, natural colorization, three styles at full strength
and one at 60 %; bottom row: the middle of each picture at twice the scale, where the strokes are
visible.
style_pictures.png — pictures the model never saw as styles (docs/images/style_pictures/, public
domain, see the README there): the pictures, then the gray sample colorized and stylized with each,
without hints and with four colour hints (drawn as dots on the input)."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from chromastyle import imaging, pipeline

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "core" / "chromastyle" / "samples" / "astronaut_gray.png"
PANELS = [("gray input", None), ("natural", "natural"), ("The Starry Night", "starry_night"),
          ("The Great Wave", "great_wave"), ("The Scream", "the_scream"), ("Composition VII, 60 %", "composition_vii:0.6")]


def main(size=320):
    picture = imaging.read_image(SAMPLE)
    small = np.asarray(Image.fromarray(np.uint8(np.round(picture.rgb * 255))).resize(
        (size, size), Image.LANCZOS), np.float32) / 255
    top, bottom = [], []
    for label, style in PANELS:
        out = small if style is None else pipeline.run(small, styles=style)
        img = Image.fromarray(np.round(np.clip(out, 0, 1) * 255).astype(np.uint8))
        q = size // 4
        bottom.append(np.asarray(img.crop((q, q, size - q, size - q)).resize((size, size), Image.NEAREST)))
        ImageDraw.Draw(img).text((6, size - 16), label, fill=(255, 255, 255))
        top.append(np.asarray(img))
    path = ROOT / "docs" / "images" / "before_after.png"
    Image.fromarray(np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)).save(path, optimize=True)
    print(path)


STYLE_PICTURES = ["arcimboldo_spring", "renoir_girls_at_the_piano", "hokusai_oiran_and_kamuro"]
HINTS = [(180, 430, "#d2691e"), (340, 400, "#d2691e"), (320, 60, "#4f6f9f"), (215, 75, "#8b5a2b")]


def _tile(rgb, size, label=None):
    img = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    if img.size != (size, size):
        img = img.resize((size, round(size * img.size[1] / img.size[0])), Image.LANCZOS)
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(img.crop((0, 0, size, min(size, img.size[1]))), (0, max(0, (size - img.size[1]) // 2)))
        img = canvas
    if label:
        ImageDraw.Draw(img).text((6, size - 16), label, fill=(255, 255, 255))
    return np.asarray(img)


def style_pictures_figure(size=256):
    picture = imaging.read_image(SAMPLE)
    gray = np.asarray(Image.fromarray(np.uint8(np.round(picture.rgb * 255))).resize(
        (size, size), Image.LANCZOS), np.float32) / 255
    scale = size / picture.size[0]
    hints = imaging.hints_from_points([(round(x * scale), round(y * scale), c) for x, y, c in HINTS], (size, size))
    folder = ROOT / "docs" / "images" / "style_pictures"
    styles = [imaging.read_image(folder / f"{name}.jpg").rgb for name in STYLE_PICTURES]
    blank = Image.new("RGB", (2 * size, size), (255, 255, 255))
    ImageDraw.Draw(blank).text((10, size // 2), "style pictures the model never saw  ->", fill=(0, 0, 0))
    header = [np.asarray(blank)]
    header += [_tile(s, size, "style: " + n.replace("_", " ")) for s, n in zip(styles, STYLE_PICTURES)]
    rows = [header]
    for with_hints in (False, True):
        h = hints if with_hints else None
        shown = gray.copy()
        if with_hints:
            dots = Image.fromarray(np.uint8(np.round(shown * 255)))
            for x, y, c in HINTS:
                r, cx, cy = 4, x * scale, y * scale
                ImageDraw.Draw(dots).ellipse((cx - r, cy - r, cx + r, cy + r), fill=c, outline=(255, 255, 255))
            shown = np.asarray(dots, np.float32) / 255
        row = [_tile(shown, size, "gray input + 4 hints" if with_hints else "gray input"),
               _tile(pipeline.run(gray, h), size, "natural")]
        row += [_tile(pipeline.run(gray, h, style_images=[[s, 1.0]]), size) for s in styles]
        rows.append(row)
    path = ROOT / "docs" / "images" / "style_pictures.png"
    Image.fromarray(np.concatenate([np.concatenate(r, 1) for r in rows], 0)).save(path, optimize=True)
    print(path)


if __name__ == "__main__":
    main()
    style_pictures_figure()
