"""`chromastyle eval`: the hint sweep (Zhang et al. 2017 protocol) against gray and Levin et al.
2004, colorfulness, the VGG16 style scores, diversity, and a sample sheet."""
import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import metrics as M
from . import pipeline
from .color import lab_to_rgb, rgb_to_lab
from .errors import UserError
from .guided import levin_propagate

HINT_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100)
SIZE = 256


def validation_photos(data=None, limit=40):
    from .train.data import default_data_dir, is_validation, list_images

    if data is None:
        folder = default_data_dir() / "train"
        files = [p for p in list_images(folder) if is_validation(p)] if folder.is_dir() else []
    else:
        files = list_images(data)
    if not files:
        raise UserError(f"no photos found in {data or 'the shared data'}; pass --data DIR")
    files = files[:limit]
    return files, [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC), np.float64) / 255
                   for p in files]


def hint_sweep(model, photos, counts=HINT_COUNTS, seed=0):
    """PSNR (8-bit RGB, input luminance kept) of model, gray and Levin per hint count; SSIM and
    colorfulness of the model at each count."""
    rows = {k: {c: [] for c in counts} for k in ("model", "levin", "gray", "ssim", "colorfulness")}
    gt_colorfulness = []
    for i, rgb in enumerate(photos):
        lab = rgb_to_lab(rgb)
        gt8 = M.to_uint8(rgb)
        gray = M.with_luminance(np.repeat(rgb.mean(-1, keepdims=True), 3, -1), lab[..., 0])
        gt_colorfulness.append(M.colorfulness(rgb))
        for c in counts:
            rng = np.random.default_rng([seed, i, c])
            hints, mask = M.sample_hint_patches(rng, lab[..., 1:], c)
            out = pipeline.run(_gray_input(lab), hints, model=model, keep="luminance")
            out = M.with_luminance(out, lab[..., 0])
            rows["model"][c].append(M.psnr(M.to_uint8(out), gt8))
            rows["ssim"][c].append(M.ssim(out.mean(-1), rgb.mean(-1)))
            rows["colorfulness"][c].append(M.colorfulness(out))
            ab = levin_propagate(lab[..., 0], hints[..., :2] * 110, mask)
            levin = np.clip(lab_to_rgb(np.concatenate([lab[..., :1], ab], -1)), 0, 1)
            rows["levin"][c].append(M.psnr(M.to_uint8(levin), gt8))
            rows["gray"][c].append(M.psnr(M.to_uint8(gray), gt8))
    table = {k: {c: float(np.mean(v)) for c, v in per.items()} for k, per in rows.items()}
    table["gt_colorfulness"] = float(np.mean(gt_colorfulness))
    return table


def _gray_input(lab):
    """The model sees only lightness: an sRGB gray image with the photo's L*."""
    gray_lab = np.concatenate([lab[..., :1], np.zeros_like(lab[..., 1:])], -1)
    return np.clip(lab_to_rgb(gray_lab), 0, 1).astype(np.float32)


class StyleScorer:
    """The style scores, with the pretrained VGG16 of chromastyle.train.perception (lower ratios
    are closer to the painting):

    - style ratio: mean over relu1_1, relu2_1, relu3_1, relu4_1 of ‖G(out) − G(painting)‖ /
      ‖G(photo) − G(painting)‖, Gram matrices normalised by C·H·W, the painting centre-cropped to
      the output's aspect and resized to its size;
    - texture ratio: the same on lightness-only, mean-centred images, so a colour tint cannot pass;
    - content: cosine similarity of relu4_2 features, output vs photo.
    """

    def __init__(self):
        from .train.perception import VGG16

        self.vgg = VGG16("conv4_2")

    def _features(self, rgb, lightness_only=False):
        import torch

        from .train.losses import CONTENT_LAYER, STYLE_LAYERS, luminance_image
        from .train.perception import gram

        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), np.float32))[None]
        if lightness_only:
            x = luminance_image(x)
        with torch.no_grad():
            f = self.vgg(x, STYLE_LAYERS + (CONTENT_LAYER,))
        return [gram(f[k])[0] for k in STYLE_LAYERS], f[CONTENT_LAYER].flatten().double()

    def painting(self, path, size):
        """The painting centre-cropped to the aspect of ``size`` (w, h) and resized to it."""
        from PIL import ImageOps

        with Image.open(path) as im:
            im = ImageOps.fit(im.convert("RGB"), size, Image.LANCZOS)
        return np.asarray(im, np.float32) / 255

    def scores(self, out, photo, painting):
        def ratio(lightness_only):
            g_out = self._features(out, lightness_only)[0]
            g_photo = self._features(photo, lightness_only)[0]
            g_paint = self._features(painting, lightness_only)[0]
            return float(np.mean([float((a - p).norm() / (b - p).norm().clamp_min(1e-12))
                                  for a, b, p in zip(g_out, g_photo, g_paint)]))

        c_out, c_photo = self._features(out)[1], self._features(photo)[1]
        content = float((c_out @ c_photo) / (c_out.norm() * c_photo.norm()).clamp_min(1e-12))
        return {"style": ratio(False), "texture": ratio(True), "content": content}


def style_table(model, photos, paintings, stroke_scale=1.0):
    """Per style at strength 1, from the gray input: mean style ratio, texture ratio and content
    (see StyleScorer). ``paintings``: {label: (painting file, group)}; group "picture" runs the
    painting as a style picture, any other group as the named style ``label``."""
    scorer = StyleScorer()
    rows = {}
    for label, (path, group) in paintings.items():
        style = {"style_images": [[path, 1.0]]} if group == "picture" else {"styles": label}
        scores = []
        for rgb in photos:
            painting = scorer.painting(path, (rgb.shape[1], rgb.shape[0]))
            out = pipeline.run(_gray_input(rgb_to_lab(rgb)), model=model, stroke_scale=stroke_scale, **style)
            scores.append(scorer.scores(out, rgb.astype(np.float32), painting))
        rows[label] = {**{k: float(np.mean([s[k] for s in scores])) for k in scores[0]}, "group": group}
    return rows


def style_paintings(model, styles_dir, pictures_dir=None):
    """What the style table scores: the model's named styles whose painting is in ``styles_dir``,
    grouped as trained or held out (the model says which it never trained on), and every picture
    in ``pictures_dir`` as a style picture."""
    info = pipeline.get_model(model).info
    held_out = set(info.held_out_styles)
    out = {s: (Path(styles_dir) / f"{s}.jpg", "held out" if s in held_out else "trained")
           for s in info.styles if s != "natural" and (Path(styles_dir) / f"{s}.jpg").exists()}
    if pictures_dir:
        from .train.data import list_images
        out.update({p.stem: (p, "picture") for p in list_images(pictures_dir)})
    return out


def diversity(model, photos):
    """Mean |Δab| between two latents, and whether z = 0 is bit-identical run to run."""
    diffs, identical = [], True
    for rgb in photos:
        gray = _gray_input(rgb_to_lab(rgb))
        a = rgb_to_lab(pipeline.run(gray, model=model, seed=1))[..., 1:]
        b = rgb_to_lab(pipeline.run(gray, model=model, seed=2))[..., 1:]
        diffs.append(np.abs(a - b).mean())
        identical &= np.array_equal(pipeline.run(gray, model=model), pipeline.run(gray, model=model))
    return {"mean_ab_difference": float(np.mean(diffs)), "z0_bit_identical": bool(identical)}


def sample_sheet(model, photos, styles, path, cell=160):
    """Rows: photos; columns: original, gray input, natural, then every style."""
    rows = []
    for rgb in photos:
        small = np.asarray(Image.fromarray(M.to_uint8(rgb)).resize((cell, cell), Image.LANCZOS), np.float32) / 255
        gray = _gray_input(rgb_to_lab(small))
        cells = [small, gray] + [pipeline.run(gray, model=model, styles=s) for s in ["natural"] + list(styles)]
        rows.append(np.concatenate(cells, 1))
    sheet = M.to_uint8(np.concatenate(rows, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path, optimize=True)
    return path


def format_tables(sweep, styles=None, div=None):
    counts = list(sweep["model"])
    lines = ["hint sweep: PSNR (dB, 8-bit RGB, input luminance kept), 256², 6×6 ground-truth patches",
             "| hints | " + " | ".join(map(str, counts)) + " |", "|---" * (len(counts) + 1) + "|"]
    for key, label in (("gray", "gray (ab = 0)"), ("levin", "Levin et al. 2004"), ("model", "chromastyle"),
                       ("ssim", "SSIM (model)"), ("colorfulness", "colorfulness (model)")):
        fmt = "{:.3f}" if key == "ssim" else "{:.2f}"
        lines.append(f"| {label} | " + " | ".join(fmt.format(sweep[key][c]) for c in counts) + " |")
    lines.append(f"ground-truth colorfulness: {sweep['gt_colorfulness']:.2f} "
                 f"(model at 0 hints: {100 * sweep['colorfulness'][counts[0]] / sweep['gt_colorfulness']:.0f} %)")
    if styles:
        lines += ["", "styles at strength 1 (VGG16; ratios: lower is closer to the painting; content: "
                      "cosine of relu4_2 to the photo)",
                  "| style | style ratio | texture ratio | content |", "|---|---|---|---|"]
        groups = sorted({r.get("group", "trained") for r in styles.values()}, key=GROUPS.index)
        label = lambda s, r: s if r.get("group", "trained") == "trained" else f"{s} ({r['group']})"  # noqa: E731
        rows = [(label(s, r), r) for s, r in styles.items()]
        for g in groups:
            members = [r for r in styles.values() if r.get("group", "trained") == g]
            rows.append((f"mean, {g}" if len(groups) > 1 else "mean",
                         {k: np.mean([r[k] for r in members]) for k in ("style", "texture", "content")}))
        lines += [f"| {s} | {r['style']:.3f} | {r['texture']:.3f} | {r['content']:.3f} |" for s, r in rows]
    if div:
        lines += ["", f"diversity: mean |Δab| between z seeds 1 and 2: {div['mean_ab_difference']:.2f}; "
                      f"z = 0 bit-identical: {div['z0_bit_identical']}"]
    return "\n".join(lines)


GROUPS = ["trained", "held out", "picture"]


def evaluate(model, data=None, styles_dir=None, limit=40, sheet=None, json_path=None,
             style_photos=6, pictures_dir=None):
    from .train.data import default_data_dir

    files, photos = validation_photos(data, limit)
    info = pipeline.get_model(model).info
    print(f"evaluating {model} on {len(photos)} photos")
    sweep = hint_sweep(model, photos)
    styles_dir = styles_dir or default_data_dir() / "styles"
    style_names = [s for s in info.styles if s != "natural"]
    styles = style_table(model, photos[:style_photos], style_paintings(model, styles_dir, pictures_dir))
    div = diversity(model, photos[:style_photos])
    print(format_tables(sweep, styles, div))
    if sheet:
        print(f"sample sheet: {sample_sheet(model, photos[:style_photos], style_names, sheet)}")
    if json_path:
        Path(json_path).write_text(json.dumps({"photos": [p.name for p in files], "sweep": sweep,
                                               "styles": styles, "diversity": div}, indent=1))
    return sweep, styles, div
