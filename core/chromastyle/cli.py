"""The `chromastyle` command."""
import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"chromastyle: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def add_run_options(p):
    """The options shared by `run`, `batch` and the worker's job header."""
    p.add_argument("--style", default="natural",
                   help="NAME[:STRENGTH][,NAME:STRENGTH…]; 'natural' is plain colorization")
    p.add_argument("--style-image", action="append", default=[], metavar="PATH[:STRENGTH]",
                   help="any picture as a style (a painting of your own, a reference frame); mixes with "
                        "--style; may be given several times")
    p.add_argument("--hints", help="hint image (PNG with alpha; every painted pixel is a colour hint)")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--keep-luminance", action="store_true", help="keep the input's lightness (pure colorization)")
    keep.add_argument("--keep-colors", action="store_true", help="keep the input's colours (stylize lightness only)")
    p.add_argument("--tileable", action="store_true", help="wrap around edges so textures still tile")
    p.add_argument("--stroke-scale", type=float, default=1.0,
                   help="size of a style's strokes relative to the picture, 0.25..4 (default 1)")
    p.add_argument("--seed", type=int, help="variation seed (default: the canonical result)")
    p.add_argument("--model", help="registry name or a model's color.onnx (default: the default model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | rocm | directml | coreml")
    p.add_argument("--max-pixels", type=int, help="refuse larger images (decompression-bomb guard)")


def options_from_args(args):
    from .pipeline import Options

    keep = "luminance" if args.keep_luminance else "colors" if args.keep_colors else "none"
    opts = Options(styles=args.style, keep=keep, tileable=args.tileable, seed=args.seed,
                   model=args.model, device=args.device, stroke_scale=args.stroke_scale,
                   style_images=[parse_style_image(spec) for spec in args.style_image])
    try:
        opts.check()
    except UserError as e:
        raise UsageError(str(e)) from None
    return opts


def parse_style_image(spec):
    """"PATH[:STRENGTH]" -> [the picture, read once for every image of the run, strength]."""
    from .pipeline import check_strength, style_picture

    path, _, strength = spec.rpartition(":")
    try:
        value = float(strength) if path else None
    except ValueError:
        value = None
    if value is None:   # no strength given, or a colon that belongs to the path
        path, value = spec, 1.0
    try:
        check_strength("the picture", value)
        return [style_picture(path), value]
    except UserError as e:
        raise UsageError(f"--style-image {path}: {e}") from None


class UsageError(UserError):
    """A bad option rather than a bad file: exit code 2."""


def build_parser():
    p = Parser(prog="chromastyle", description="Colorize and stylize images with one GAN pass.")
    p.add_argument("--version", action="version", version=f"chromastyle {__version__}")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    r = sub.add_parser("run", help="process image files")
    r.add_argument("inputs", nargs="+", type=Path)
    r.add_argument("-o", "--output", required=True, type=Path,
                   help="output file (one input) or folder (several inputs or variations)")
    r.add_argument("--variations", type=int, default=1, help="write N variations (seeds S, S+1, …)")
    add_run_options(r)

    b = sub.add_parser("batch", help="process a folder or glob of frames/images, resumable")
    b.add_argument("input", help="folder or glob pattern (quote it), processed in natural order")
    b.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    b.add_argument("--workers", type=int, default=1, help="parallel model instances")
    b.add_argument("--resume", action="store_true", help="skip frames whose output exists")
    b.add_argument("--stabilize", action="store_true", help="temporal consistency for image sequences")
    b.add_argument("--stabilize-strength", type=float, default=0.7)
    b.add_argument("--backend", choices=["local", "ray"], default="local")
    b.add_argument("--ray-address", help="an existing Ray cluster (default: a local one)")
    add_run_options(b)

    s = sub.add_parser("styles", help="list the styles of a model")
    s.add_argument("--model")

    m = sub.add_parser("models", help="list, download, verify or remove models")
    msub = m.add_subparsers(dest="action", required=True, parser_class=Parser)
    msub.add_parser("list")
    for name in ("pull", "path", "rm"):
        x = msub.add_parser(name)
        x.add_argument("name", nargs="?" if name != "rm" else None)
    v = msub.add_parser("verify")
    v.add_argument("name", nargs="?")
    v.add_argument("--fix", action="store_true")

    sub.add_parser("info", help="versions, providers, cache dir, default model")

    t = sub.add_parser("train", help="train the colour or the style network (needs chromastyle[train])")
    t.add_argument("part", nargs="?", choices=["color", "style"], help="what to train (not with --resume)")
    t.add_argument("--resume", type=Path, help="a checkpoint to continue, with its own config (and run folder, unless --out)")
    t.add_argument("--data", help="folder with train/ and styles/")
    t.add_argument("--out", help="run folder (checkpoints, log)")
    t.add_argument("--steps", type=int)
    t.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    t.add_argument("--random-encoder", action="store_true",
                   help="colour: a randomly initialised frozen VGG16 (the control for pretraining)")
    t.add_argument("--init", type=Path, help="start from this checkpoint's weights (no optimizer state)")
    t.add_argument("--hold-out", metavar="SLUGS",
                   help="style: comma-separated paintings never trained on, reported apart by eval "
                        "('' for none; default: the five of docs/training.md)")
    t.add_argument("--bank-extra", type=Path, metavar="DIR",
                   help="style: a folder of more paintings for the style bank; they train the network "
                        "on more kinds of picture but are not named styles")
    t.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a numeric setting, e.g. style_weight=5 (loss weights, lr, batch…; repeatable)")
    t.add_argument("--make-pack", type=Path, metavar="DIR",
                   help="only write a compact copy of --data (short side 192, JPEG 90) to DIR and exit")
    t.add_argument("--slim", type=Path, metavar="CHECKPOINT",
                   help="only write a weights-only float16 copy of CHECKPOINT to --out and exit")

    e = sub.add_parser("export", help="checkpoints -> a model folder (color.onnx, style.onnx, describe.onnx)")
    e.add_argument("color", type=Path, help="colour decoder checkpoint")
    e.add_argument("style", type=Path, help="style network checkpoint")
    e.add_argument("-o", "--output", required=True, type=Path, help="model folder")
    e.add_argument("--fp32", action="store_true", help="keep float32 weights (default: stored as float16)")
    e.add_argument("--temperature", type=float, help="annealed-mean temperature of the colour decoding")
    e.add_argument("--class-mix", type=float, help="share of the class decoding vs the regression head")
    e.add_argument("--neutral-ends", action="store_true",
                   help="undo the class rebalancing near black and white (no warm casts on white or black)")
    e.add_argument("--register", type=Path, metavar="REGISTRY",
                   help="update the files' sha256 and size in this registry.toml")
    e.add_argument("--sweep", action="store_true",
                   help="only print PSNR and colourfulness of each decoding (temperature, class mix) on "
                        "validation photos 41–100 (eval uses the first 40) and exit")

    ev = sub.add_parser("eval", help="hint sweep, style and diversity tables (and a sample sheet)")
    ev.add_argument("model")
    ev.add_argument("--data", type=Path, help="folder of photos (default: the validation split)")
    ev.add_argument("--styles-dir", type=Path, help="folder of paintings (default: the shared data)")
    ev.add_argument("--pictures", type=Path, metavar="DIR",
                    help="also score every picture in DIR used as a style picture (e.g. paintings never trained on)")
    ev.add_argument("--limit", type=int, default=40, help="photos to evaluate")
    ev.add_argument("--sheet", type=Path, help="also write a sample sheet (PNG) here")
    ev.add_argument("--json", type=Path, help="write the figures as JSON too")

    i = sub.add_parser("install", help="install a host plug-in (gimp, krita, blender)")
    i.add_argument("host", choices=["gimp", "krita", "blender"])
    i.add_argument("--dest", type=Path, help="plug-in folder (default: the host's user folder)")
    i.add_argument("--python", help="interpreter that runs the worker (default: this one)")
    i.add_argument("--blender", help="Blender executable to install the extension into")
    u = sub.add_parser("uninstall", help="remove a host plug-in")
    u.add_argument("host", choices=["gimp", "krita", "blender"])
    u.add_argument("--dest", type=Path)

    for name, help_ in (("serve", "run the local worker"),):
        w = sub.add_parser(name, help=help_)
        w.add_argument("--host", default="127.0.0.1")
        w.add_argument("--port", type=int, default=0)
        w.add_argument("--state-file", type=Path)
        w.add_argument("--max-pixels", type=int, default=64_000_000,
                       help="largest job in pixels, whatever a client asks (bounds a job's memory)")
        w.add_argument("--token", help="bearer token (default: a new random one)")
        w.add_argument("--model", help="model to load at start and use when a job names none: a registry "
                                       "name or a file (default: the default model)")
        w.add_argument("--device", default="auto")
        w.add_argument("--log-file", type=Path)
        w.add_argument("--job-lease", type=float, default=120.0,
                       help="cancel a job when no client asked about it for this many seconds")
        w.add_argument("--models-dir", type=Path,
                       help="a folder of .onnx models that jobs may name besides the registry's (by their "
                            "path inside it); jobs can name no other file")
        w.add_argument("--request-timeout", type=float, default=10.0,
                       help="seconds a connection may take to send its request headers, or pause")
        act = w.add_mutually_exclusive_group()
        act.add_argument("--stop", action="store_true", help="stop the running worker")
        act.add_argument("--status", action="store_true", help="print the running worker's health")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="chromastyle: %(message)s")
    try:
        return COMMANDS[args.command](args) or EXIT_OK
    except UserError as e:
        print(f"chromastyle: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("chromastyle: interrupted", file=sys.stderr)
        return 130


# -- commands ----------------------------------------------------------------------------------

def check_styles(opts, model):
    """Unknown styles, or style pictures for a model that cannot take them, are usage errors,
    found before any file is touched; the pictures are described once, here."""
    from . import pipeline

    try:
        pipeline.style_vector(opts.styles, model.info.styles)
        pipeline.mixed_descriptor(model, opts.style_images)
    except UserError as e:
        raise UsageError(str(e)) from None


def output_paths(inputs, output, variations):
    """One output file per (input, variation); a folder when there are several."""
    many = len(inputs) > 1 or variations > 1
    if not many and output.suffix and not output.is_dir():
        return [[output]]
    if output.exists() and not output.is_dir():
        raise UserError(f"{output} must be a folder when there are several inputs or variations")
    suffix = lambda p: p.suffix if p.suffix.lower() in (".png", ".tif", ".tiff") else ".png"  # noqa: E731
    return [[output / (f"{p.stem}{f'_v{v + 1}' if variations > 1 else ''}{suffix(p)}")
             for v in range(variations)] for p in inputs]


def cmd_run(args):
    from tqdm import tqdm

    from . import imaging, pipeline

    opts = options_from_args(args)
    if args.variations < 1:
        raise UsageError("--variations must be at least 1")
    model = pipeline.get_model(opts.model, opts.device)
    check_styles(opts, model)
    outs = output_paths(args.inputs, args.output, args.variations)
    imaging.refuse_collisions((src, dst) for src, targets in zip(args.inputs, outs) for dst in targets)
    read_opts = {"max_pixels": args.max_pixels} if args.max_pixels else {}
    failures, written, total = [], 0, len(args.inputs) * args.variations
    bar = tqdm(total=total, unit="image", disable=total < 2)
    for src, targets in zip(args.inputs, outs):
        try:
            picture = imaging.read_image(src, **read_opts)
            hints = imaging.hints_from_file(args.hints, picture.size, **read_opts) if args.hints else None
            for v, dst in enumerate(targets):
                seed = opts.seed if args.variations == 1 else (opts.seed or 0) + v + 1
                result = pipeline.run(picture, hints, options=dataclasses.replace(opts, seed=seed))
                imaging.write_image(dst, result, inputs=args.inputs)   # refuses to overwrite an input
                written += 1
                bar.update()
        except UserError as e:
            failures.append((src, str(e)))
            if len(args.inputs) == 1:
                raise
        except Exception as e:  # noqa: BLE001 — one file's failure must not end the run
            logging.getLogger("chromastyle").info("%s failed:", src, exc_info=True)
            failures.append((src, f"internal error: {type(e).__name__}: {e} (run with -v for details)"))
    bar.close()
    print(f"wrote {targets[0]}" if total == 1 else f"wrote {written} image(s) to {args.output}")
    for src, why in failures:
        print(f"chromastyle: failed: {src}: {why}", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def cmd_batch(args):
    from tqdm import tqdm

    from . import batch, pipeline

    opts = options_from_args(args)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.hints:
        raise UsageError("--hints applies to one image; use `chromastyle run` for hinted images")
    check_styles(opts, pipeline.get_model(opts.model, opts.device))
    inputs = batch.list_inputs(args.input)
    bar = tqdm(total=len(inputs), unit="frame")

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()
    report = batch.run_batch(inputs, args.output, opts, workers=args.workers, resume=args.resume,
                             stabilize=args.stabilize, strength=args.stabilize_strength, backend=args.backend,
                             ray_address=args.ray_address, progress=progress, max_pixels=args.max_pixels)
    bar.close()
    for src, why in report.redone:
        print(f"chromastyle: processed again: {src}: {why}", file=sys.stderr)
    print(f"{len(report.done)} written, {len(report.skipped)} already done, {len(report.failed)} failed "
          f"in {report.seconds:.1f} s -> {args.output}")
    for src, why in report.failed:
        print(f"chromastyle: failed: {src}: {why}", file=sys.stderr)
    return EXIT_FAILED if report.failed else EXIT_OK


def cmd_styles(args):
    from .pipeline import styles

    for slug, name in styles(args.model):
        print(f"{slug:28s} {name}")


def cmd_models(args):
    from . import models

    if args.action == "list":
        default = models.default_model_name()
        for name, e in models.load_registry().items():
            here = models.local_path(e, e.main_file)
            print(f"{'*' if name == default else ' '} {name:24s} {e.version:8s} "
                  f"{'downloaded' if here else 'not downloaded':15s} {e.license}")
    elif args.action == "pull":
        from tqdm import tqdm

        bar = tqdm(unit="B", unit_scale=True)

        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()
        print(models.pull(args.name, progress=progress))
        bar.close()
    elif args.action == "path":
        print(models.model_path(args.name))
    elif args.action == "verify":
        bad = 0
        for path, state in models.verify(args.name, fix=args.fix):
            print(f"{state:8s} {path}")
            bad += state in ("missing", "corrupt")
        return EXIT_FAILED if bad else EXIT_OK
    elif args.action == "rm":
        removed = models.remove(args.name)
        print("\n".join(f"removed {p}" for p in removed) or "nothing cached for that model")


def cmd_info(args):
    import platform

    import numpy
    import onnxruntime

    from . import models

    print(f"chromastyle   {__version__}")
    print(f"python        {platform.python_version()} ({sys.executable})")
    print(f"numpy         {numpy.__version__}")
    print(f"onnxruntime   {onnxruntime.__version__}; providers: {', '.join(onnxruntime.get_available_providers())}")
    try:
        import torch
        print(f"torch         {torch.__version__} (cuda: {torch.cuda.is_available()})")
    except ImportError:
        print("torch         not installed (training needs chromastyle[train])")
    print(f"cache dir     {models.home_dir()}")
    name = models.default_model_name()
    entry = models.get_entry(name)
    print(f"default model {name} {entry.version}: {models.local_path(entry, entry.main_file) or 'not downloaded'}")


def config_values(pairs):
    """--set NAME=VALUE pairs -> overrides of the trainers' numeric settings; other names are refused."""
    from .train.loop import TRAINERS
    numeric = {f.name: f.type for cls, _ in TRAINERS.values() for f in dataclasses.fields(cls)
               if f.type in (int, float)}
    values = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in numeric:
            raise UsageError(f"--set {pair!r}: expected NAME=VALUE, NAME one of {', '.join(sorted(numeric))}")
        try:
            values[name] = numeric[name](text)
        except ValueError:
            raise UsageError(f"--set {pair!r}: {name} takes {'an integer' if numeric[name] is int else 'a number'}") from None
    return values


def cmd_train(args):
    try:
        from .train.loop import train
    except ImportError:
        raise UserError("training needs PyTorch: pip install 'chromastyle[train]'") from None
    if args.make_pack:
        from .train.data import default_data_dir, make_pack
        size = make_pack(args.data or default_data_dir(), args.make_pack)
        print(f"wrote {args.make_pack} ({size / 2 ** 20:.1f} MiB)")
        return
    if args.slim:
        from .train.loop import slim_checkpoint
        if not args.out:
            raise UsageError("--slim needs --out FILE")
        print(f"wrote {slim_checkpoint(args.slim, args.out)}")
        return
    if not args.resume and not args.part:
        raise UsageError("say what to train (color or style), or --resume a checkpoint")
    overrides = dict(data=args.data, out=args.out, steps=args.steps, threads=args.threads)
    if args.random_encoder:
        overrides["pretrained"] = False
    if args.init:
        overrides["init"] = str(args.init)
    if args.bank_extra:
        from .train.data import list_images
        if not args.bank_extra.is_dir() or not list_images(args.bank_extra):
            raise UsageError(f"--bank-extra: {args.bank_extra} is not a folder of pictures (JPEG, PNG, WebP, TIFF)")
        overrides["bank_extra"] = str(args.bank_extra)
    if args.hold_out is not None:
        overrides["holdout"] = [slug.strip() for slug in args.hold_out.split(",") if slug.strip()]
    overrides.update(config_values(args.set))
    print(f"checkpoint: {train(args.part, resume=args.resume, **overrides)}")


def cmd_export(args):
    try:
        from .train.export import export
    except ImportError:
        raise UserError("export needs PyTorch: pip install 'chromastyle[train]'") from None
    for ckpt in (args.color, args.style):
        if not ckpt.is_file():
            raise UserError(f"checkpoint {ckpt} does not exist")
    if args.sweep:
        from .evaluate import validation_photos
        from .train.export import decoding_sweep

        photos = validation_photos(None, 100)[1][40:]
        table, truth, gray = decoding_sweep(args.color, photos, neutral_ends=args.neutral_ends)
        ends = ", neutral ends" if args.neutral_ends else ""
        print(f"{len(photos)} photos, 0 hints{ends}; gray {gray:.2f} dB; ground-truth colourfulness {truth:.1f}")
        print("| temperature | class mix | PSNR | colourfulness | % of truth |\n|---|---|---|---|---|")
        for (t, m), (p, c) in table.items():
            print(f"| {t} | {m} | {p:.2f} | {c:.1f} | {100 * c / truth:.0f} |")
        return
    decoding = {k: v for k, v in (("temperature", args.temperature), ("class_mix", args.class_mix)) if v is not None}
    if args.neutral_ends:
        decoding["neutral_ends"] = True
    print(f"wrote {export(args.color, args.style, args.output, fp16=not args.fp32, **decoding)}")
    if args.register:
        from .train.export import register
        register(args.output, args.register)
        print(f"registered it in {args.register}")


def cmd_eval(args):
    from .evaluate import evaluate

    evaluate(args.model, data=args.data, styles_dir=args.styles_dir, limit=args.limit,
             sheet=args.sheet, json_path=args.json, pictures_dir=args.pictures)


def cmd_install(args):
    from . import install

    if args.host == "gimp":
        print(f"installed the GIMP plug-in in {install.install_gimp(args.dest)}")
    elif args.host == "krita":
        print(f"installed the Krita plug-in in {install.install_krita(args.dest)} and enabled it in kritarc")
    else:
        path, command = install.install_blender(args.blender, args.dest)
        print(f"built {path}" + (f"; install it with:\n  {command}" if command else " and installed it"))
    print(f"the plug-ins start the worker with {args.python or sys.executable} "
          f"(recorded in {install.record_interpreter(args.python)})")


def cmd_uninstall(args):
    from . import install

    removed = install.uninstall(args.host, args.dest)
    print("\n".join(f"removed {p}" for p in removed) or "nothing was installed there")


def cmd_serve(args):
    from . import server

    return server.main(args)


COMMANDS = {"run": cmd_run, "batch": cmd_batch, "styles": cmd_styles, "models": cmd_models, "info": cmd_info,
            "train": cmd_train, "export": cmd_export, "eval": cmd_eval, "serve": cmd_serve,
            "install": cmd_install, "uninstall": cmd_uninstall}

if __name__ == "__main__":
    sys.exit(main())
