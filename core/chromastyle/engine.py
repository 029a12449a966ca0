"""Run a model of the chromastyle contract (version 2) with ONNX Runtime.

A model is ONNX graphs in one folder: the colour graph (the main file, which carries the model's
metadata), the style graph it names and, in models that take example pictures as styles, the
describe graph. See docs/design.md, "The model contract".
"""
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelError, UserError

log = logging.getLogger(__name__)

CONTRACT = "2"
# Preference order when several are available (DESIGN.md).
PROVIDER_ORDER = ["CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
                  "CoreMLExecutionProvider", "CPUExecutionProvider"]
DEVICE_PROVIDERS = {"cuda": "CUDAExecutionProvider", "rocm": "ROCMExecutionProvider",
                    "directml": "DmlExecutionProvider", "coreml": "CoreMLExecutionProvider",
                    "cpu": "CPUExecutionProvider"}


def choose_providers(device="auto", available=None):
    """Providers to ask ONNX Runtime for, best first; CPU is always the last resort."""
    if available is None:
        import onnxruntime as ort
        available = ort.get_available_providers()
    if device == "auto":
        return [p for p in PROVIDER_ORDER if p in available] or ["CPUExecutionProvider"]
    if device not in DEVICE_PROVIDERS:
        raise UserError(f"unknown device '{device}'; use auto, {', '.join(DEVICE_PROVIDERS)}")
    wanted = DEVICE_PROVIDERS[device]
    return [wanted, "CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [wanted]


@dataclass
class ModelInfo:
    styles: list
    z_dim: int
    color_size: int          # long side of the colour graph's working picture
    stroke_size: int         # long side of the style graph's working picture at stroke scale 1
    color_multiple: int = 8  # working sizes must be multiples of these
    style_multiple: int = 4
    path: str = ""
    providers: list = field(default_factory=list)
    notice: str = ""         # e.g. "CUDA was asked for, but CPU runs: …"
    style_images: bool = False   # whether example pictures can be styles (a describe graph)
    held_out_styles: list = field(default_factory=list)   # named styles its style graph never trained on


def parse_metadata(meta, path):
    if meta.get("chromastyle.contract") != CONTRACT or meta.get("chromastyle.role") != "color":
        raise ModelError(f"{path} is not the main file of a chromastyle model of contract {CONTRACT} "
                         f"(it says contract {meta.get('chromastyle.contract')!r}, role "
                         f"{meta.get('chromastyle.role')!r}); use a model made for this version or "
                         "update chromastyle")
    try:
        info = ModelInfo(styles=json.loads(meta["chromastyle.styles"]), z_dim=int(meta["chromastyle.z_dim"]),
                         color_size=int(meta["chromastyle.color_size"]),
                         stroke_size=int(meta["chromastyle.stroke_size"]),
                         color_multiple=int(meta["chromastyle.color_multiple"]),
                         style_multiple=int(meta["chromastyle.style_multiple"]), path=str(path))
        graphs = json.loads(meta["chromastyle.graphs"])
        info.held_out_styles = json.loads(meta.get("chromastyle.held_out_styles", "[]"))
    except (KeyError, ValueError, TypeError) as e:
        raise ModelError(f"{path} has broken chromastyle metadata ({e}); re-export or re-download it") from None
    return info, graphs


def _session(path, providers, threads):
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; run `chromastyle models pull`")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/… types
        raise ModelError(f"cannot load the model {path}: {e}; the file may be corrupt — "
                         "run `chromastyle models verify --fix`") from None


class Model:
    """The two sessions of a model and its metadata. The style graph is loaded on first use: a
    run that only colorizes never pays for it."""

    def __init__(self, path, device="auto", threads=0):
        path = Path(path)
        self.threads = threads or int(os.environ.get("CHROMASTYLE_THREADS", "0") or 0)
        self.providers = choose_providers(device)
        self.color = _session(path, self.providers, self.threads)
        self.info, graphs = parse_metadata(self.color.get_modelmeta().custom_metadata_map, path)
        self.style_path = path.parent / Path(graphs.get("style", "")).name
        self.describe_path = path.parent / Path(graphs["describe"]).name if "describe" in graphs else None
        for graph in filter(None, (self.style_path, self.describe_path)):
            if not graph.is_file():
                raise ModelError(f"{path} names a graph {graph.name} that is missing next to it; run "
                                 "`chromastyle models verify --fix`")
        self.info.style_images = self.describe_path is not None
        self._style = self._describe = None
        self.info.providers = self.color.get_providers()
        if self.providers[0] not in self.info.providers:
            self.info.notice = (f"{self.providers[0].replace('ExecutionProvider', '')} was asked for, but "
                                f"{self.info.providers[0].replace('ExecutionProvider', '')} runs "
                                "(install chromastyle[gpu] and the GPU drivers to use it)")
            log.warning(self.info.notice)

    def colorize(self, L, hints, propagated, z):
        """L [N,1,h,w], hints [N,3,h,w], the hints' propagation [N,2,h/4,w/4], z [N,Z] ->
        ab/110 [N,2,h,w]."""
        return self.color.run(["ab"], {"L": L, "hints": hints, "propagated": propagated, "z": z})[0]

    def stylize(self, rgb, style, example=None, example_weight=0.0):
        """sRGB [N,3,h,w], style weights [N,S] (and an example picture's descriptor [D] with its
        weight) -> stylized sRGB [N,3,h,w]."""
        if self._style is None:
            self._style = _session(self.style_path, self.providers, self.threads)
        feed = {"image": rgb, "style": style}
        if self.info.style_images:
            n = len(rgb)
            dim = {i.name: i.shape for i in self._style.get_inputs()}["example"][1]
            ex = np.zeros((n, dim), np.float32) if example is None else np.repeat(example[None], n, 0)
            feed.update(example=ex.astype(np.float32),
                        example_weight=np.full((n, 1), example_weight, np.float32))
        elif example is not None:
            self.require_style_images()
        return self._style.run(["rgb"], feed)[0]

    def require_style_images(self):
        """A clear refusal for a model that cannot take a picture as a style."""
        if not self.info.style_images:
            raise UserError(f"the model {self.info.path} cannot take a picture as a style; use a model "
                            "with a describe graph (the default model has one)")

    def describe(self, rgb):
        """An example picture, sRGB [1,3,h,w] -> its style descriptor [D]."""
        self.require_style_images()
        if self._describe is None:
            self._describe = _session(self.describe_path, self.providers, self.threads)
        return self._describe.run(["descriptor"], {"image": rgb})[0][0]


def load_model(path, device="auto"):
    return Model(path, device)
