"""Regenerates the README's before/after figure from the shipped model:
    python docs/make_figures.py

Top row: the gray sample, natural colorization, three styles at full strength and one at 60 %.
Bottom row: the middle of each picture at twice the scale, where the strokes are visible."""
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


if __name__ == "__main__":
    main()
