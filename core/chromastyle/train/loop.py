"""Training loop: config with presets, exact resume from checkpoints, loss logs."""
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from .losses import (RandomFeatures, ab_prior, class_loss, gram, hinge_d, hinge_g, sobel,
                     style_loss)
from .nets import Generator, GeneratorArgs, MultiScaleDiscriminator, lab_inputs

ALL_STYLES = [
    "starry_night", "starry_night_over_rhone", "bedroom_in_arles", "auvers_village_street",
    "water_lilies", "impression_sunrise", "japanese_footbridge", "the_magpie", "great_wave",
    "ejiri_suruga", "kazusa_sea_route", "inokashira_snow", "horse_mackerel_prawn",
    "turner_shipwreck", "grande_jatte", "mont_sainte_victoire", "dance_foyer", "in_bed", "te_fare",
    "moulin_de_la_galette", "harvesters", "ramparts_aigues_mortes", "durer_lion",
    "ryogoku_bridge_sunset", "the_scream", "composition_vii",
]


@dataclass
class TrainConfig:
    preset: str = "cpu"
    data: str = ""                 # folder with train/ and styles/; default ../shared/data
    out: str = "runs/cpu"
    styles: list = field(default_factory=lambda: list(ALL_STYLES))
    steps: int = 4500
    batch: int = 16
    style_share: float = 0.375     # fraction of each batch trained on a painting style
    crop: int = 128
    short_side: int = 192          # photos are scaled so; 256² eval images see a similar scale
    painting_long_side: int = 320
    max_images: int = 0            # 0: all training photos
    lr: float = 1e-3
    widths: tuple = (16, 32, 64, 96)
    res_blocks: int = 4
    class_weight: float = 1.0
    reg_weight: float = 4.0
    hint_weight: float = 4.0
    style_weight: float = 1.0
    structure_weight: float = 100.0
    adv_weight: float = 0.05
    ms_weight: float = 0.005       # mode seeking (Mao et al. 2019): different z, different colours
    ms_pairs: int = 2
    class_mix: float = 0.5
    seed: int = 0
    log_every: int = 25
    ckpt_every: int = 250
    device: str = "auto"
    threads: int = 0               # CPU threads for torch; 0 = torch's default
    split_mb: int = 0              # write checkpoints in parts of this size (0: one file)


PRESETS = {
    "smoke": dict(steps=12, batch=8, crop=64, short_side=80, painting_long_side=128, max_images=24,
                  widths=(8, 16, 16, 24), res_blocks=2, log_every=4, ckpt_every=6,
                  out="runs/smoke"),
    "cpu": dict(),
    "gpu": dict(steps=60000, batch=48, crop=192, short_side=256, painting_long_side=512,
                widths=(24, 48, 96, 160), res_blocks=8, lr=5e-4, out="runs/gpu",
                ckpt_every=2000, split_mb=15),   # ~60 MB checkpoints travel in 15 MiB parts
}


def save_checkpoint(state, path, split_mb=0):
    """Atomically; with ``split_mb``, as PATH.000, PATH.001, … parts of at most that many MiB (files
    that fit transfer limits), which load_checkpoint joins. Stale parts are removed."""
    import io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    step = split_mb * 2 ** 20 if split_mb else len(data)
    chunks = [data[i:i + step] for i in range(0, len(data), step)] or [b""]
    names = [path] if len(chunks) == 1 else [path.with_name(f"{path.name}.{i:03d}") for i in range(len(chunks))]
    for name, chunk in zip(names, chunks):
        tmp = name.with_name(name.name + ".tmp")
        tmp.write_bytes(chunk)
        os.replace(tmp, name)
    for stale in [path] + sorted(path.parent.glob(f"{path.name}.[0-9][0-9][0-9]")):
        if stale not in names:
            stale.unlink(missing_ok=True)


def load_checkpoint(path, device="cpu"):
    import io

    path = Path(path)
    parts = sorted(path.parent.glob(f"{path.name}.[0-9][0-9][0-9]"))
    if path.exists() or not parts:
        return torch.load(path, map_location=device, weights_only=False)
    return torch.load(io.BytesIO(b"".join(p.read_bytes() for p in parts)), map_location=device, weights_only=False)


def make_config(preset="cpu", **overrides):
    cfg = replace(TrainConfig(preset=preset), **PRESETS[preset])
    known = {f.name for f in fields(TrainConfig)}
    return replace(cfg, **{k: v for k, v in overrides.items() if k in known and v is not None})


def pick_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        root = Path(cfg.data) if cfg.data else D.default_data_dir()
        train_files, _ = D.split(root / "train")
        if cfg.max_images:
            train_files = train_files[:cfg.max_images]
        self.photos = D.load_photos(train_files, cfg.short_side)
        self.paintings = D.load_paintings(root / "styles", cfg.styles, cfg.painting_long_side, cfg.crop)
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        args = GeneratorArgs(styles=["natural"] + list(cfg.styles), widths=tuple(cfg.widths),
                             res_blocks=cfg.res_blocks, class_mix=cfg.class_mix)
        self.G = Generator(args).to(self.device)
        self.D = MultiScaleDiscriminator(len(args.styles)).to(self.device)
        self.features = RandomFeatures().to(self.device)
        betas = (0.5, 0.99)
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr, betas=betas)
        self.step = 0
        self.log = []
        prior_rng = np.random.default_rng(cfg.seed + 1)
        crops = [D.random_crops(prior_rng, self.photos, 16, cfg.crop) for _ in range(8)]
        abs_ = [lab_inputs(torch.from_numpy(c))[1].numpy()[:, :, ::4, ::4] for c in crops]
        bins = self.G.bins.cpu().numpy()
        self.class_weights = torch.from_numpy(ab_prior(abs_, bins)).to(self.device)
        with torch.no_grad():  # the paintings' Gram matrices are fixed targets
            self.style_grams = []
            for img in self.paintings:
                x = torch.from_numpy(img.transpose(2, 0, 1)[None] / 255.0).float().to(self.device)
                self.style_grams.append([gram(f)[0] for f in self.features(x)])

    # -- checkpoints -------------------------------------------------------------------
    def state(self):
        return {
            "format": "chromastyle-checkpoint-1",
            "generator_args": self.G.args.to_dict(),
            "config": asdict(self.cfg),
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "class_weights": self.class_weights.cpu(),
            "step": self.step,
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "log": self.log,
        }

    def save(self, path):
        save_checkpoint(self.state(), path, self.cfg.split_mb)

    def load(self, path):
        ck = load_checkpoint(path, self.device)
        self.G.load_state_dict(ck["generator"])
        self.D.load_state_dict(ck["discriminator"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.class_weights = ck["class_weights"].to(self.device)
        self.step = ck["step"]
        self.rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        self.log = ck["log"]

    # -- one step ----------------------------------------------------------------------
    def batch(self):
        cfg, rng = self.cfg, self.rng
        n_style = int(round(cfg.batch * cfg.style_share))
        n_nat = cfg.batch - n_style
        rgb = D.random_crops(rng, self.photos, cfg.batch, cfg.crop)
        rgb[n_nat:n_nat + cfg.ms_pairs] = rgb[:cfg.ms_pairs]  # pairs for mode seeking
        rgb_t = torch.from_numpy(rgb)
        L, ab = lab_inputs(rgb_t)
        hints = np.zeros((cfg.batch, 3) + rgb.shape[2:], np.float32)
        hints[:n_nat] = D.sample_hints(rng, ab[:n_nat].numpy())
        # the pairs share hints; they are trained as natural samples with two latents
        hints[n_nat:n_nat + cfg.ms_pairs] = hints[:cfg.ms_pairs]
        n_styles = len(cfg.styles) + 1
        style = np.zeros((cfg.batch, n_styles), np.float32)
        style[:n_nat + cfg.ms_pairs, 0] = 1
        kinds = rng.integers(1, n_styles, size=n_style - cfg.ms_pairs)
        style[np.arange(n_nat + cfg.ms_pairs, cfg.batch), kinds] = 1
        z = np.zeros((cfg.batch, self.G.args.z_dim), np.float32)
        z[:cfg.ms_pairs] = rng.standard_normal((cfg.ms_pairs, z.shape[1]))
        z[n_nat:n_nat + cfg.ms_pairs] = rng.standard_normal((cfg.ms_pairs, z.shape[1]))
        painting = np.stack([D.random_crops(rng, [self.paintings[k - 1]], 1, cfg.crop)[0]
                             for k in kinds]) if len(kinds) else None
        dev = self.device
        t = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
        return dict(rgb=rgb_t.to(dev), L=L.to(dev), ab=ab.to(dev), hints=t(hints), style=t(style),
                    z=t(z), kinds=kinds, painting=None if painting is None else t(painting),
                    n_nat=n_nat + cfg.ms_pairs)

    def train_step(self):
        cfg, b = self.cfg, self.batch()
        nat = slice(0, b["n_nat"])
        sty = slice(b["n_nat"], cfg.batch)
        pairs = cfg.ms_pairs
        autocast = torch.autocast("cuda", torch.bfloat16, enabled=self.device == "cuda")
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, self.step / cfg.steps)))
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        with autocast:
            out, heads = self.G(b["L"], b["hints"], b["style"], b["z"], heads=True)
        out = out.float()
        losses = {}
        # natural colorization: rebalanced classification + regression, hints honoured
        losses["class"] = cfg.class_weight * class_loss(heads["logits"][nat], b["ab"][nat],
                                                        self.G.bins, self.class_weights)
        ab_reg = F.interpolate(heads["ab_reg"][nat].float(), scale_factor=4.0, mode="bilinear")
        losses["reg"] = cfg.reg_weight * F.smooth_l1_loss(ab_reg, b["ab"][nat], beta=0.05)
        mask = b["hints"][nat, 2:]
        err = (heads["ab"][nat].float() - b["ab"][nat]).abs() * mask
        losses["hint"] = cfg.hint_weight * err.sum() / (2 * mask.sum()).clamp_min(1)
        if pairs:
            a1, a2 = heads["ab"][:pairs].float(), heads["ab"][nat][-pairs:].float()
            dz = (b["z"][:pairs] - b["z"][nat][-pairs:]).abs().mean()
            losses["ms"] = cfg.ms_weight / ((a1 - a2).abs().mean() / dz + 1e-3)
        # stylization: texture statistics of the painting, structure of the photo
        if b["painting"] is not None:
            target = [torch.stack([self.style_grams[k - 1][i] for k in b["kinds"]])
                      for i in range(len(self.style_grams[0]))]
            losses["style"] = cfg.style_weight * style_loss(self.features(out[sty]), target)
            losses["structure"] = cfg.structure_weight * F.l1_loss(
                sobel(heads["L"][sty].float()), sobel(b["L"][sty]))
        if cfg.adv_weight:
            real = torch.cat([b["rgb"][:b["n_nat"] - pairs]] +
                             ([b["painting"]] if b["painting"] is not None else []))
            real_style = torch.cat([b["style"][:b["n_nat"] - pairs], b["style"][sty]])
            fake = torch.cat([out[:b["n_nat"] - pairs], out[sty]])
            with autocast:
                losses["adv"] = cfg.adv_weight * hinge_g(self.D(fake, real_style))
        loss_g = sum(losses.values())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if cfg.adv_weight:
            with autocast:
                loss_d = hinge_d(self.D(real, real_style), self.D(fake.detach(), real_style))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            losses["d"] = loss_d
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def run(self, on_log=print):
        out = Path(self.cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        started, sums, count = time.time(), {}, 0
        while self.step < self.cfg.steps:
            for k, v in self.train_step().items():
                sums[k] = sums.get(k, 0) + v
            count += 1
            if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                row = {"step": self.step, "seconds": round(time.time() - started, 1),
                       **{k: round(v / count, 4) for k, v in sums.items()}}
                self.log.append(row)
                with open(out / "log.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                on_log(row)
                sums, count = {}, 0
            if self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                self.save(out / "last.pt")
        return out / "last.pt"


def train(preset="cpu", resume=None, **overrides):
    """Train a preset, or resume a checkpoint with its own config (``steps`` etc. may be raised)."""
    if resume:
        saved = load_checkpoint(resume)["config"]
        saved.update({k: v for k, v in overrides.items() if v is not None})
        cfg = make_config(saved.pop("preset"), **saved)
    else:
        cfg = make_config(preset, **overrides)
    trainer = Trainer(cfg)
    if resume:
        trainer.load(resume)
    return trainer.run()
