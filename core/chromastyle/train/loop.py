"""Training: the colour decoder (on cached frozen-encoder features) and the style network, each with
a config, exact resume from weights-only checkpoints, and a loss log."""
import io
import json
import math
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from ..color import lab_to_rgb, rgb_to_lab
from ..errors import UserError
from .losses import (STYLE_LAYERS, ab_prior, class_loss, content_loss, gram_targets, hinge_d,
                     hinge_g, luminance_image, smooth_chroma, stripe_loss, style_loss, tone_loss)
from .nets import (COLOR_FEATURES, ColorArgs, ColorDecoder, MultiScaleDiscriminator, StyleArgs,
                   StyleNet, as_dict, lab_inputs, style_descriptor)
from .perception import VGG16

ALL_STYLES = [
    "starry_night", "starry_night_over_rhone", "bedroom_in_arles", "auvers_village_street",
    "water_lilies", "impression_sunrise", "japanese_footbridge", "the_magpie", "great_wave",
    "ejiri_suruga", "kazusa_sea_route", "inokashira_snow", "horse_mackerel_prawn",
    "turner_shipwreck", "grande_jatte", "mont_sainte_victoire", "dance_foyer", "in_bed", "te_fare",
    "moulin_de_la_galette", "harvesters", "ramparts_aigues_mortes", "durer_lion",
    "ryogoku_bridge_sunset", "the_scream", "composition_vii",
]
# Named styles the style network is never trained on: its scores on them measure how it renders
# a picture it never saw (an artist's own painting).
HELD_OUT_STYLES = ["the_scream", "japanese_footbridge", "kazusa_sea_route", "te_fare", "harvesters"]


# -- checkpoints ------------------------------------------------------------------------------

def save_checkpoint(state, path, split_mb=0):
    """Atomically; with ``split_mb``, as PATH.000, PATH.001, … parts of at most that many MiB (files
    that fit transfer limits), which load_checkpoint joins. Stale parts are removed."""
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
    """Checkpoints hold tensors and plain Python values only, so they load with
    ``weights_only=True``: a checkpoint file cannot run code."""
    path = Path(path)
    parts = sorted(path.parent.glob(f"{path.name}.[0-9][0-9][0-9]"))
    src = path if path.exists() or not parts else io.BytesIO(b"".join(p.read_bytes() for p in parts))
    return torch.load(src, map_location=device, weights_only=True)


def slim_checkpoint(src, dst):
    """A weights-only float16 copy of a checkpoint: the networks and what rebuilds them, without
    optimizer and RNG states or the log. A few MB, so milestones can be committed and carried to
    another machine, where ``chromastyle train PART --init FILE`` continues from them."""
    ck = load_checkpoint(src)
    out = {k: ck[k] for k in ("kind", "args", "config", "class_weights", "step") if k in ck}
    for net in ("net", "D"):
        if net in ck:
            out[net] = {k: v.half() if v.is_floating_point() else v for k, v in ck[net].items()}
    save_checkpoint(out, dst)
    return Path(dst)


def pick_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def mixed_precision():
    """bfloat16 autocast where the hardware computes it natively (CUDA; CPUs with AVX512-BF16 or
    AMX, where convolutions run about 1.8× faster), else nothing. Losses are taken in float32."""
    import contextlib

    if torch.cuda.is_available():
        return torch.autocast("cuda", torch.bfloat16)
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return torch.autocast("cpu", torch.bfloat16) if native else contextlib.nullcontext()


def rng_state(rng):
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def set_rng_state(rng, state):
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


def cosine_lr(opt, base, step, total):
    lr = base * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


class Run:
    """What both trainers share: the run folder, the log, checkpoints every so often, and best.pt
    whenever the held-out score ``best_key`` (if any) is the lowest so far."""

    kind = ""
    best_key = None

    def start(self, cfg):
        """Threads and the photos' train/validation split (cut to ``max_images``)."""
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.root = Path(cfg.data) if cfg.data else D.default_data_dir()
        train_files, val_files = D.split(self.root / "train")
        if cfg.max_images:
            train_files, val_files = train_files[:cfg.max_images], val_files[:max(4, cfg.max_images // 8)]
        return train_files, val_files

    def write_log(self, row):
        self.log.append(row)
        with open(Path(self.cfg.out) / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def save(self, path):
        save_checkpoint(self.state(), path, self.cfg.split_mb)

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
                if self.cfg.eval_every and (self.step % self.cfg.eval_every == 0 or self.step == self.cfg.steps):
                    row.update(self.validate())
                    score = row.get(self.best_key)
                    if score is not None and score < min([r[self.best_key] for r in self.log if self.best_key in r],
                                                         default=float("inf")):
                        self.save(out / "best.pt")
                self.write_log(row)
                on_log(row)
                sums, count = {}, 0
            if self.step % self.cfg.ckpt_every == 0 and self.step < self.cfg.steps:
                self.save(out / "last.pt")
        self.save(out / "last.pt")
        return out / "last.pt"


# -- colour -----------------------------------------------------------------------------------

@dataclass
class ColorConfig:
    data: str = ""                 # folder with train/ (and styles/); default ../shared/data
    out: str = "runs/color"
    cache: str = ""                # feature cache folder; default OUT/../cache-<encoder>
    pretrained: bool = True        # False: a random frozen VGG16, the control
    encoder_width: int = 64        # a random encoder may be narrower (tests)
    init: str = ""                 # start from this checkpoint's decoder weights (fine-tuning)
    init_lr_scale: float = 1.0     # with init: the learning rate of the layers it holds × this (0: frozen)
    steps: int = 4000
    batch: int = 16
    lr: float = 5e-4
    crop: int = 192
    short_sides: tuple = (256, 208)
    max_images: int = 0
    width8: int = 192
    width4: int = 96
    blocks8: int = 2
    blocks4: int = 2
    global_width: int = 0          # > 0: the global-context branch (nets.ColorDecoder.global_context)
    reg_weight: float = 4.0
    p_none: float = 0.3            # share of crops trained without hints
    p_dense: float = 0.2           # share of crops with 20-150 hint patches
    z_share: float = 0.25          # share of crops trained with a random latent
    ms_weight: float = 0.02        # mode seeking (Mao et al. 2019): different z, different colours
    seed: int = 0
    log_every: int = 25
    eval_every: int = 250
    ckpt_every: int = 250
    threads: int = 0
    split_mb: int = 0


def propagate_hints(L, hints):
    """The hints' colours propagated over each picture by Levin et al.'s optimisation at 1/4
    resolution (zeros without hints): the colour network's starting point. L: N,1,H,W; hints:
    N,3,H,W -> N,2,H/4,W/4."""
    from ..guided import levin_propagate
    from .nets import pool_hints

    hints4 = pool_hints(hints, 4).numpy()
    L4 = F.avg_pool2d(L, 4).numpy()
    out = np.zeros((len(L), 2) + L4.shape[-2:], np.float32)
    for i in range(len(L)):
        mask = hints4[i, 2] > 0
        if mask.any():
            out[i] = levin_propagate(L4[i, 0] * 100, hints4[i, :2].transpose(1, 2, 0), mask).transpose(2, 0, 1)
    return torch.from_numpy(out)


class ColorTrainer(Run):
    """Trains the colour decoder on features of the frozen encoder, computed once (cache)."""

    kind = "color"
    best_key = "val_ce"

    def __init__(self, cfg: ColorConfig):
        train_files, val_files = self.start(cfg)
        encoder_name = "pretrained" if cfg.pretrained else "random"
        cache = Path(cfg.cache) if cfg.cache else Path(cfg.out).parent / f"cache-{encoder_name}-{cfg.crop}"
        if cfg.encoder_width != 64:
            cache = cache.with_name(cache.name + f"-w{cfg.encoder_width}")
        parts = [(f"train-{side}", train_files, side) for side in cfg.short_sides]
        parts.append((f"val-{cfg.short_sides[0]}", val_files, cfg.short_sides[0]))
        encoder = None
        for i, (name, files, side) in enumerate(parts):
            if not (cache / name / "meta.json").exists():
                encoder = encoder or VGG16("conv4_3", pretrained=cfg.pretrained, width=cfg.encoder_width)
                D.build_feature_cache(files, cache / name, encoder, cfg.crop, side, cfg.seed + i)
        self.train_cache = D.join_caches([D.open_feature_cache(cache / name) for name, _, _ in parts[:-1]])
        self.val_cache = D.open_feature_cache(cache / parts[-1][0])
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.args = ColorArgs(pretrained=cfg.pretrained, encoder_width=cfg.encoder_width, width8=cfg.width8,
                              width4=cfg.width4, blocks8=cfg.blocks8, blocks4=cfg.blocks4,
                              global_width=cfg.global_width)
        self.net = ColorDecoder(self.args)
        loaded = set()
        if cfg.init:
            start = load_checkpoint(cfg.init)
            # a checkpoint without the global branch starts a network with one (it is zero-initialised)
            try:
                missing, unexpected = self.net.load_state_dict(start["net"], strict=False)
            except RuntimeError as e:   # shapes differ
                raise UserError(f"{cfg.init} does not fit this network: {e}") from None
            if unexpected or any(not k.startswith("global_") for k in missing):
                raise UserError(f"{cfg.init} does not fit this network (missing {missing}, unexpected {unexpected})")
            loaded = set(start["net"])
            self.class_weights = start["class_weights"]
        else:
            sample = self.rng.choice(len(self.train_cache["rgb"]), min(256, len(self.train_cache["rgb"])), replace=False)
            batch = self.load(np.sort(sample))
            self.net.set_feature_stats(batch["feats"])
            ab4 = F.avg_pool2d(batch["ab"], 4).numpy()
            self.class_weights = torch.from_numpy(ab_prior([ab4], self.net.bins.numpy()))
        groups = [{"params": [p for n, p in self.net.named_parameters() if n not in loaded], "lr_scale": 1.0},
                  {"params": [p for n, p in self.net.named_parameters() if n in loaded], "lr_scale": cfg.init_lr_scale}]
        for p in groups[1]["params"]:
            p.requires_grad_(cfg.init_lr_scale > 0)
        self.opt = torch.optim.Adam([g for g in groups if g["params"]], cfg.lr, betas=(0.9, 0.99))
        self.step, self.log = 0, []

    def load(self, idx, cache=None):
        cache = cache or self.train_cache
        rgb = torch.from_numpy(cache["rgb"][idx].transpose(0, 3, 1, 2).astype(np.float32) / 255)
        L, ab = lab_inputs(rgb)
        feats = {k: torch.from_numpy(cache[k][idx].astype(np.float32)) for k in COLOR_FEATURES}
        return {"L": L, "ab": ab, "feats": feats}

    def state(self):
        return {"kind": self.kind, "args": as_dict(self.args), "config": as_dict(self.cfg),
                "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "class_weights": self.class_weights, "step": self.step, "rng": rng_state(self.rng),
                "log": self.log}

    def load_state(self, ck):
        self.net.load_state_dict(ck["net"])
        self.opt.load_state_dict(ck["opt"])
        self.class_weights = ck["class_weights"]
        self.step, self.log = ck["step"], ck["log"]
        set_rng_state(self.rng, ck["rng"])

    def train_step(self):
        cfg, rng = self.cfg, self.rng
        idx = np.sort(rng.choice(len(self.train_cache["rgb"]), cfg.batch, replace=False))
        b = self.load(idx)
        hints = torch.from_numpy(D.sample_hints(rng, b["ab"].numpy(), p_none=cfg.p_none, p_dense=cfg.p_dense))
        propagated = propagate_hints(b["L"], hints)
        z = torch.zeros(cfg.batch, self.args.z_dim)
        varied = rng.random(cfg.batch) < cfg.z_share
        z[varied] = torch.from_numpy(rng.standard_normal((int(varied.sum()), self.args.z_dim)).astype(np.float32))
        cosine_lr(self.opt, cfg.lr, self.step, cfg.steps)
        with mixed_precision():
            logits, reg, reach = self.net(b["feats"], b["L"], hints, propagated, z)
        logits, reg = logits.float(), reg.float()
        ab4 = F.avg_pool2d(b["ab"], 4)
        losses = {"class": class_loss(logits, ab4, self.net.bins, self.class_weights),
                  "reg": cfg.reg_weight * F.smooth_l1_loss(reg, ab4, beta=0.05)}
        if cfg.ms_weight:
            # mode seeking on two crops: the same input under two latents must differ
            pair = slice(0, 2)
            z2 = torch.randn(2, self.args.z_dim)
            feats2 = {k: v[pair] for k, v in b["feats"].items()}
            with mixed_precision():
                out2 = [o.float() for o in self.net(feats2, b["L"][pair], hints[pair], propagated[pair], z2)]
            d = (self.net.decode(logits[pair], reg[pair], reach[pair]) - self.net.decode(*out2)).abs().mean()
            losses["ms"] = cfg.ms_weight / (d / (z[pair] - z2).abs().mean() + 1e-3)
        loss = sum(losses.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def validate(self, count=128):
        """Held-out cross-entropy (unweighted, as the calibration notes report it) and the error
        and colourfulness of the decoded colours, without hints, at 1/4 resolution."""
        n = min(count, len(self.val_cache["rgb"]))
        ce, err, sat, sat_gt = [], [], [], []
        for start in range(0, n, 32):
            idx = np.arange(start, min(n, start + 32))
            b = self.load(idx, self.val_cache)
            hints = torch.zeros(len(idx), 3, *b["L"].shape[-2:])
            propagated = torch.zeros(len(idx), 2, *F.avg_pool2d(b["L"], 4).shape[-2:])
            logits, reg, reach = self.net(b["feats"], b["L"], hints, propagated, torch.zeros(len(idx), self.args.z_dim))
            ab4 = F.avg_pool2d(b["ab"], 4)
            ce.append(float(class_loss(logits, ab4, self.net.bins, None)) * len(idx))
            ab = self.net.decode(logits, reg, reach)
            err.append(float(((ab - ab4) ** 2).mean()) * len(idx))
            sat.append(float(ab.norm(dim=1).mean()) * len(idx))
            sat_gt.append(float(ab4.norm(dim=1).mean()) * len(idx))
        return {"val_ce": round(sum(ce) / n, 4), "val_ab_mse": round(sum(err) / n, 5),
                "val_chroma_ratio": round(sum(sat) / sum(sat_gt), 3)}


# -- style ------------------------------------------------------------------------------------

@dataclass
class StyleConfig:
    data: str = ""
    out: str = "runs/style"
    styles: list = field(default_factory=lambda: list(ALL_STYLES))
    holdout: list = field(default_factory=lambda: list(HELD_OUT_STYLES))  # named, never trained on
    steps: int = 6000
    batch: int = 8                 # crops per step; one of them trains natural (the identity)
    crop: int = 128
    stroke_size: int = 384         # photos and paintings are seen at this long side
    variants: int = 24             # crops of each training painting in the style bank
    bank_crop: int = 256
    texture_share: float = 0.25    # share of the style samples drawn from material textures
    bank_extra: str = ""           # a folder of more paintings for the bank only (not named styles)
    mix_share: float = 0.0         # share of the style samples that mix two (descriptors and Gram targets)
    max_images: int = 0
    lr: float = 1e-3
    widths: tuple = (24, 48, 96)
    res_blocks: int = 5
    style_weight: float = 3.0
    texture_weight: float = 3.0
    content_weight: float = 1.0
    tone_weight: float = 30.0      # keep the photo's tonal layout (no blown-out blotches)
    tone_margin: float = 0.25
    stripe_weight: float = 0.0     # against one-pixel colour stripes (stripe_loss); 10 since 2.7.0's last 2000 steps
    smooth_output: int = 0         # 1: losses on the output as the core shows it (smooth_chroma); 0 up to 2.6.0
    identity_weight: float = 10.0
    adv_weight: float = 0.02
    init: str = ""                 # start from this checkpoint's weights (fine-tuning, a new machine)
    seed: int = 0
    log_every: int = 25
    eval_every: int = 250
    ckpt_every: int = 250
    threads: int = 0
    split_mb: int = 0


def rotate_palette(rgb, angle, saturation):
    """An sRGB batch (N,3,H,W) with its a*b* rotated by ``angle`` and scaled by ``saturation``: the
    same strokes in another palette, a style sample the paintings alone do not give."""
    lab = rgb_to_lab(rgb.permute(0, 2, 3, 1))
    c, s = math.cos(angle) * saturation, math.sin(angle) * saturation
    a, b = lab[..., 1], lab[..., 2]
    lab = torch.stack([lab[..., 0], c * a - s * b, s * a + c * b], -1)
    return lab_to_rgb(lab).permute(0, 3, 1, 2).clamp(0, 1)


class StyleBank:
    """The style samples the network learns to follow: for each, the picture (uint8, for the
    discriminator), its descriptor (the network's condition) and its Gram targets (the loss).
    Crops of each training painting, half of them with the palette rotated, plus material
    textures from the training photos. Computed once, kept in memory (float16 targets)."""

    def __init__(self, vgg, paintings, textures, cfg, rng):
        pictures = []
        for img in paintings:
            for i in range(cfg.variants):
                crop = torch.from_numpy(D.random_crops(rng, [img], 1, min(cfg.bank_crop, *img.shape[:2])))
                if i % 2:
                    crop = rotate_palette(crop, rng.uniform(-math.pi, math.pi), rng.uniform(0.6, 1.3))
                pictures.append(crop)
        self.painting_count = len(pictures)
        for img in textures:
            pictures.append(torch.from_numpy(D.random_crops(rng, [img], 1, min(cfg.bank_crop, *img.shape[:2]))))
        self.pictures, self.descriptors, self.targets = [], [], []
        with torch.no_grad():
            for t in pictures:
                self.pictures.append((t[0] * 255).round().to(torch.uint8))
                self.descriptors.append(style_descriptor(vgg, t)[0])
                g = gram_targets(vgg, t)
                self.targets.append({k: [m.half() for m in v] for k, v in g.items()})
        self.descriptors = torch.stack(self.descriptors)
        self.texture_share = cfg.texture_share if len(pictures) > self.painting_count else 0.0

    def draw(self, rng, count):
        n, p = len(self.pictures), self.painting_count
        return [int(rng.integers(p, n)) if rng.random() < self.texture_share else int(rng.integers(p))
                for _ in range(count)]

    def crops(self, rng, idx, size):
        """Random crops of the samples' pictures, uint8 N,3,size,size."""
        return torch.stack([self.pictures[i][:, y:y + size, x:x + size] for i in idx
                            for y, x in [rng.integers(self.pictures[i].shape[1] - size + 1, size=2)]])


class StyleTrainer(Run):
    kind = "style"

    def __init__(self, cfg: StyleConfig):
        unknown = [s for s in cfg.holdout if s not in ALL_STYLES + list(cfg.styles)]
        if unknown:  # a typo would silently train on the painting meant to be held out
            raise UserError(f"no painting named {', '.join(unknown)} to hold out; the paintings are {', '.join(ALL_STYLES)}")
        train_files, val_files = self.start(cfg)
        self.photos = [D.load_rgb(p, long_side=cfg.stroke_size) for p in train_files]
        self.photos = [p for p in self.photos if min(p.shape[:2]) >= cfg.crop]
        textures = [p for p, f in zip(self.photos, train_files) if Path(f).name.startswith(D.TEXTURE_PREFIX)]
        trained = [s for s in cfg.styles if s not in cfg.holdout]
        paintings = D.load_paintings([self.root / "styles" / f"{s}.jpg" for s in cfg.styles], cfg.stroke_size, cfg.crop)
        extra = D.load_paintings(D.list_images(cfg.bank_extra), cfg.stroke_size, cfg.crop) if cfg.bank_extra else []
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.args = StyleArgs(styles=["natural"] + list(cfg.styles), widths=tuple(cfg.widths),
                              res_blocks=cfg.res_blocks, stroke_size=cfg.stroke_size)
        self.vgg = VGG16("conv4_2")
        self.net = StyleNet(self.args)
        self.D = MultiScaleDiscriminator(self.args.descriptor_dim)
        with torch.no_grad():
            tensors = [torch.from_numpy(p.transpose(2, 0, 1)[None] / 255.0).float() for p in paintings]
            named = torch.cat([style_descriptor(self.vgg, t) for t in tensors])
        self.bank = StyleBank(self.vgg, [p for p, s in zip(paintings, cfg.styles) if s in trained] + extra,
                              textures if cfg.texture_share else [], cfg, self.rng)
        self.net.set_descriptors(named, population=self.bank.descriptors)
        if cfg.init:
            start = load_checkpoint(cfg.init)
            self.net.load_state_dict(start["net"])
            if "D" in start:
                self.D.load_state_dict(start["D"])
        self.val_photos = [D.load_rgb(p, long_side=cfg.stroke_size) for p in val_files[:2]]
        self.opt = torch.optim.Adam(self.net.parameters(), cfg.lr, betas=(0.9, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr, betas=(0.5, 0.99))
        self.step, self.log = 0, []

    def state(self):
        return {"kind": self.kind, "args": as_dict(self.args), "config": as_dict(self.cfg),
                "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "D": self.D.state_dict(), "opt_d": self.opt_d.state_dict(),
                "step": self.step, "rng": rng_state(self.rng), "log": self.log}

    def load_state(self, ck):
        self.net.load_state_dict(ck["net"])
        self.opt.load_state_dict(ck["opt"])
        self.D.load_state_dict(ck["D"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.step, self.log = ck["step"], ck["log"]
        set_rng_state(self.rng, ck["rng"])

    def batch(self):
        cfg, rng = self.cfg, self.rng
        photo = torch.from_numpy(D.random_crops(rng, self.photos, cfg.batch, cfg.crop))
        # the style graph sees colorized pictures: anything from gray to full colour
        L, ab = lab_inputs(photo)
        sat = torch.from_numpy(rng.uniform(0, 1.1, (cfg.batch, 1, 1, 1)).astype(np.float32))
        lab = torch.cat([L * 100, ab * 110 * sat], 1).permute(0, 2, 3, 1)
        x = lab_to_rgb(lab).permute(0, 3, 1, 2).clamp(0, 1)
        samples = self.bank.draw(rng, cfg.batch - 1)   # the first crop trains natural (the identity)
        # some samples are a blend of two: descriptors between the bank's, as style mixing and pictures
        # never trained on give; the target is the same blend of their Gram matrices
        blend = [(i, i, 1.0) for i in samples]
        if cfg.mix_share:
            partners = self.bank.draw(rng, len(samples))
            blend = [(i, j, float(rng.uniform(0, 1))) if rng.random() < cfg.mix_share else (i, i, 1.0)
                     for i, j in zip(samples, partners)]
        style = torch.zeros(cfg.batch, len(self.args.styles))
        style[0, 0] = 1
        weight = torch.ones(cfg.batch, 1)
        weight[0] = 0
        d = self.bank.descriptors
        mixed = torch.stack([a * d[i] + (1 - a) * d[j] for i, j, a in blend])
        example = torch.cat([torch.zeros(1, self.args.descriptor_dim), mixed])
        return x, style, example, weight, blend

    def targets(self, blend):
        """The Gram targets of each (blended) sample, float32."""
        t = self.bank.targets

        def one(i, j, a):   # an unblended sample (every one at mix_share 0) needs no arithmetic
            if a == 1.0:
                return {k: [g.float() for g in v] for k, v in t[i].items()}
            return {k: [a * gi.float() + (1 - a) * gj.float() for gi, gj in zip(t[i][k], t[j][k])] for k in t[i]}
        return [one(*b) for b in blend]

    def train_step(self):
        cfg = self.cfg
        x, style, example, weight, blend = self.batch()
        cosine_lr(self.opt, cfg.lr, self.step, cfg.steps)
        cosine_lr(self.opt_d, cfg.lr, self.step, cfg.steps)
        sty = slice(1, None)
        targets = self.targets(blend)
        # the discriminator compares with the painting's own crops: blended samples have none
        pure = [k for k, (_, _, a) in enumerate(blend) if a == 1.0]
        cond = ((example - self.net.descriptor_mean) / self.net.descriptor_std)[sty]
        with mixed_precision():
            out = self.net(x, style, example, weight).float()
            losses = {"identity": cfg.identity_weight * F.l1_loss(out[0], x[0])}
            styled = smooth_chroma(out[sty]) if cfg.smooth_output else out[sty]
            feats = self.vgg(styled, STYLE_LAYERS + ("relu4_2",))
            with torch.no_grad():
                content_target = self.vgg(x[sty], ("relu4_2",))["relu4_2"].float()
            losses["style"] = cfg.style_weight * style_loss(feats, [t["rgb"] for t in targets])
            if cfg.texture_weight:
                losses["texture"] = cfg.texture_weight * style_loss(
                    self.vgg(luminance_image(styled), STYLE_LAYERS), [t["texture"] for t in targets])
            losses["content"] = cfg.content_weight * content_loss(feats["relu4_2"].float(), content_target)
            if cfg.tone_weight:
                losses["tone"] = cfg.tone_weight * tone_loss(styled, x[sty], cfg.tone_margin)
            if cfg.stripe_weight:
                losses["stripes"] = cfg.stripe_weight * stripe_loss(out[sty])
            if cfg.adv_weight and pure:
                fakes = styled[pure]
                losses["adv"] = cfg.adv_weight * hinge_g([o.float() for o in self.D(fakes, cond[pure])])
        loss = sum(losses.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if cfg.adv_weight and pure:
            real_crops = self.bank.crops(self.rng, [blend[k][0] for k in pure], cfg.crop).float() / 255
            with mixed_precision():
                real, fake = self.D(real_crops, cond[pure]), self.D(fakes.detach(), cond[pure])
            loss_d = hinge_d([o.float() for o in real], [o.float() for o in fake])
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            losses["d"] = loss_d
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def validate(self):
        """A sheet of two validation photos × natural and four paintings (two trained, two held
        out) in the run folder; how far natural is from the identity; and the style scores of
        chromastyle eval (style and texture ratios, content), apart for trained and held-out."""
        from PIL import Image

        from ..evaluate import StyleScorer

        if not self.val_photos:
            return {}
        self.scorer = getattr(self, "scorer", None) or StyleScorer()
        trained = [n for n in self.args.styles[1:] if n not in self.cfg.holdout][:2]
        names = trained + [n for n in self.cfg.holdout if n in self.args.styles][:2]
        onehot = lambda n: F.one_hot(torch.tensor([self.args.styles.index(n)]), len(self.args.styles)).float()
        rows, identity, scores = [], [], {"": [], "held_": []}
        for img in self.val_photos:
            x = torch.from_numpy(img.transpose(2, 0, 1)[None] / 255.0).float()
            cells = [self.net(x, onehot(n)) for n in ["natural"] + names]
            if self.cfg.smooth_output:
                cells[1:] = [smooth_chroma(c) for c in cells[1:]]
            identity.append(float((cells[0] - x).abs().mean()))
            photo = img.astype(np.float32) / 255
            for name, out in zip(names, cells[1:]):
                painting = self.scorer.painting(self.root / "styles" / f"{name}.jpg", (img.shape[1], img.shape[0]))
                group = "held_" if name in self.cfg.holdout else ""
                scores[group].append(self.scorer.scores(out[0].numpy().transpose(1, 2, 0), photo, painting))
            rows.append(torch.cat([x] + cells, 3)[0])
        width = min(r.shape[2] for r in rows)
        sheet = torch.cat([r[:, :min(r.shape[1] for r in rows), :width] for r in rows], 1)
        Image.fromarray((sheet.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            Path(self.cfg.out) / f"sheet-{self.step:05d}.jpg", quality=85)
        return {"val_identity_l1": round(float(np.mean(identity)), 4),
                **{f"val_{g}{k}": round(float(np.mean([s[k] for s in group])), 3)
                   for g, group in scores.items() if group for k in group[0]}}


TRAINERS = {"color": (ColorConfig, ColorTrainer), "style": (StyleConfig, StyleTrainer)}


def make_config(kind, **overrides):
    config_cls = TRAINERS[kind][0]
    known = {f.name for f in fields(config_cls)}
    cfg = config_cls()
    values = {k: (tuple(v) if isinstance(getattr(cfg, k), tuple) else v)
              for k, v in overrides.items() if k in known and v is not None}
    return replace(cfg, **values)


def train(kind, resume=None, **overrides):
    """Train the colour decoder or the style network, or resume a checkpoint with its own config
    (``steps`` etc. may be raised)."""
    ck = load_checkpoint(resume) if resume else None
    kind = ck["kind"] if ck else kind
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in fields(TRAINERS[kind][0])})
    if unknown:  # make_config drops them (an old checkpoint's settings); a caller's would be lost silently
        raise UserError(f"the {kind} trainer has no setting {', '.join(unknown)}")
    trainer = TRAINERS[kind][1](make_config(kind, **{**(ck["config"] if ck else {}), **given}))
    if ck:
        trainer.load_state(ck)
    return trainer.run()
