"""Run a model of the chromastyle contract: ONNX Runtime, or PyTorch for training checkpoints."""
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelError, UserError

log = logging.getLogger(__name__)

CONTRACT = "1"
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
    multiple: int
    z_dim: int
    path: str = ""
    providers: list = field(default_factory=list)
    notice: str = ""   # e.g. "CUDA was asked for, but CPU runs: …"


def parse_metadata(meta, path):
    if meta.get("chromastyle.contract") != CONTRACT:
        raise ModelError(f"{path} is not a chromastyle model of contract {CONTRACT} "
                         f"(it says {meta.get('chromastyle.contract')!r}); use a model made for "
                         "this version or update chromastyle")
    try:
        return ModelInfo(styles=json.loads(meta["chromastyle.styles"]),
                         multiple=int(meta["chromastyle.multiple"]), z_dim=int(meta["chromastyle.z_dim"]),
                         path=str(path))
    except (KeyError, ValueError) as e:
        raise ModelError(f"{path} has broken chromastyle metadata ({e}); re-export or re-download it") from None


class OnnxModel:
    """An ONNX Runtime session and the contract metadata read from the file."""

    def __init__(self, path, device="auto", threads=0):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist; run `chromastyle models pull`")
        opts = ort.SessionOptions()
        threads = threads or int(os.environ.get("CHROMASTYLE_THREADS", "0") or 0)
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        wanted = choose_providers(device)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=wanted)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/… types
            raise ModelError(f"cannot load the model {path}: {e}; the file may be corrupt — "
                             "run `chromastyle models verify --fix`") from None
        self.info = parse_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self.info.providers = self.session.get_providers()
        if wanted[0] not in self.info.providers:
            self.info.notice = (f"{wanted[0].replace('ExecutionProvider', '')} was asked for, but "
                                f"{self.info.providers[0].replace('ExecutionProvider', '')} runs "
                                "(install chromastyle[gpu] and the GPU drivers to use it)")
            log.warning(self.info.notice)

    def run(self, L, hints, style, z):
        return self.session.run(["rgb"], {"L": L, "hints": hints, "style": style, "z": z})[0]


class TorchModel:
    """A training checkpoint run by PyTorch with the same contract (needs chromastyle[train])."""

    def __init__(self, path, device="auto"):
        try:
            import torch
            from .train.nets import Generator, GeneratorArgs
        except ImportError:
            raise UserError("running a .pt checkpoint needs PyTorch: pip install 'chromastyle[train]'") from None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            from .train.loop import load_checkpoint
            ck = load_checkpoint(path, device)
            args = GeneratorArgs(**ck["generator_args"])
        except Exception as e:
            raise ModelError(f"cannot load the checkpoint {path}: {e}") from None
        self.torch, self.device = torch, device
        self.net = Generator(args).to(device).eval()
        self.net.load_state_dict(ck["generator"])
        self.info = ModelInfo(styles=list(args.styles), multiple=self.net.multiple,
                              z_dim=args.z_dim, path=str(path), providers=[f"torch:{device}"])

    def run(self, L, hints, style, z):
        t = lambda a: self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        with self.torch.no_grad():
            return self.net(t(L), t(hints), t(style), t(z)).float().cpu().numpy()


def load_model(path, device="auto"):
    path = Path(path)
    if path.suffix == ".pt":
        return TorchModel(path, device)
    return OnnxModel(path, device)
