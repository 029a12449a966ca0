"""Training code on CPU: the smoke preset, exact resume, export parity (needs chromastyle[train])."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chromastyle import cli, engine  # noqa: E402
from chromastyle.train import data as D  # noqa: E402
from chromastyle.train.export import export, load_generator  # noqa: E402
from chromastyle.train.loop import ALL_STYLES, Trainer, make_config  # noqa: E402
from PIL import Image  # noqa: E402


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
    assert hints[:, :2][np.broadcast_to(hints[:, 2:] == 0, hints[:, :2].shape)].max() == 0


def test_smoke_preset_trains_and_exports(data_dir, tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "--preset", "smoke", "--data", str(data_dir), "--out", str(out)]) == 0
    ckpt = out / "last.pt"
    assert ckpt.stat().st_size < 16 * 2 ** 20
    log = (out / "log.jsonl").read_text().splitlines()
    assert len(log) >= 3 and '"class"' in log[-1] and '"style"' in log[-1]
    assert cli.main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 0
    model = engine.OnnxModel(tmp_path / "m.onnx")
    assert model.info.styles == ["natural"] + ALL_STYLES


def test_resume_is_exact(data_dir, tmp_path):
    cfg = make_config("smoke", data=str(data_dir), out=str(tmp_path), steps=4, threads=1)
    straight = Trainer(cfg)
    for _ in range(4):
        straight.train_step()
    first = Trainer(cfg)
    for _ in range(2):
        first.train_step()
    first.save(tmp_path / "half.pt")
    resumed = Trainer(cfg)
    resumed.load(tmp_path / "half.pt")
    for _ in range(2):
        resumed.train_step()
    for (name, a), b in zip(straight.G.state_dict().items(), resumed.G.state_dict().values()):
        assert torch.equal(a, b), name


def test_onnx_equals_pytorch_and_reduced_precisions_run(data_dir, tmp_path):
    cfg = make_config("smoke", data=str(data_dir), out=str(tmp_path), steps=2)
    trainer = Trainer(cfg)
    trainer.run(on_log=lambda row: None)
    ckpt = tmp_path / "last.pt"
    net, _ = load_generator(ckpt)
    rng = np.random.default_rng(1)
    L = rng.random((2, 1, 72, 96), np.float32)
    hints = np.zeros((2, 3, 72, 96), np.float32)
    hints[:, :, 10:14, 20:24] = [[[0.3]], [[-0.2]], [[1.0]]]
    style = np.zeros((2, 27), np.float32)
    style[0, 0], style[1, 0], style[1, 5] = 1, 0.4, 0.6
    z = rng.standard_normal((2, 8)).astype(np.float32)
    with torch.no_grad():
        ref = net(*map(torch.from_numpy, (L, hints, style, z))).numpy()
    for flag, tol in (("", 1e-3), ("--fp16", 0.05), ("--int8", 0.25)):
        path = tmp_path / f"m{flag}.onnx"
        assert cli.main(["export", str(ckpt), "-o", str(path)] + ([flag] if flag else [])) == 0
        out = engine.OnnxModel(path).run(L, hints, style, z)
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() < tol, (flag, np.abs(out - ref).max())


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
