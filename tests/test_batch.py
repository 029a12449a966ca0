import numpy as np
import pytest
from PIL import Image

from chromastyle import batch, cli, imaging, metrics, pipeline
from conftest import photo


def pan_sequence(n=6, step=3, size=(128, 96)):
    """Frames of a camera panning right over a still photo; frame t at x is frame t-1 at x+step."""
    w, h = size
    big = photo(size=(w + step * n, h))
    return [big[:, t * step:t * step + w] for t in range(n)], step


def write_frames(folder, frames, fmt="frame_{}.png"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / fmt.format(i + 1)
        Image.fromarray(metrics.to_uint8(f)).save(p)
        paths.append(p)
    return paths


def test_natural_order_and_listing(tmp_path):
    for name in ("f_10.png", "f_2.png", "f_1.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in batch.list_inputs(tmp_path)] == ["f_1.png", "f_2.png", "f_10.png"]
    assert [p.name for p in batch.list_inputs(str(tmp_path / "f_1*.png"))] == ["f_1.png", "f_10.png"]
    with pytest.raises(Exception, match="no images"):
        batch.list_inputs(tmp_path / "nothing*")


def test_batch_resume_failures_and_exit_codes(tmp_path, capsys):
    frames, _ = pan_sequence(4)
    paths = write_frames(tmp_path / "in", frames)
    (tmp_path / "in" / "frame_5.png").write_bytes(b"broken")
    out = tmp_path / "out"
    assert cli.main(["batch", str(tmp_path / "in"), "-o", str(out), "--style", "the_scream:0.5"]) == 1
    err = capsys.readouterr().err
    assert "frame_5.png" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in paths]
    # a second run without --resume refuses to overwrite; with --resume it skips what is done
    assert cli.main(["batch", str(tmp_path / "in"), "-o", str(out)]) == 1
    (out / "frame_2.png").unlink()   # as if the run had crashed before this frame
    stamp = (out / "frame_1.png").stat().st_mtime_ns
    (tmp_path / "in" / "frame_5.png").unlink()
    assert cli.main(["batch", str(tmp_path / "in"), "-o", str(out), "--resume", "--style", "the_scream:0.5"]) == 0
    assert "1 written, 3 already done, 0 failed" in capsys.readouterr().out
    assert (out / "frame_1.png").stat().st_mtime_ns == stamp
    assert not list(out.glob("*.part"))
    # --max-pixels reaches the frames: all refused, each named
    assert cli.main(["batch", str(tmp_path / "in"), "-o", str(tmp_path / "small"), "--max-pixels", "100"]) == 1
    assert "above the limit" in capsys.readouterr().err


def test_parallel_workers_give_identical_outputs(tmp_path):
    frames, _ = pan_sequence(4)
    write_frames(tmp_path / "in", frames)
    opts = pipeline.Options(styles="starry_night:0.6")
    inputs = batch.list_inputs(tmp_path / "in")
    r1 = batch.run_batch(inputs, tmp_path / "one", opts, workers=1)
    r2 = batch.run_batch(inputs, tmp_path / "two", opts, workers=2)
    assert len(r1.done) == len(r2.done) == 4
    for p in inputs:
        a = np.asarray(Image.open(tmp_path / "one" / p.name))
        b = np.asarray(Image.open(tmp_path / "two" / p.name))
        assert np.array_equal(a, b)


def test_a_style_picture_is_read_once_for_the_whole_sequence(tmp_path, capsys):
    """The picture is read when the command starts: frames processed in parallel use the same
    picture even if the file changes or goes away meanwhile."""
    from conftest import ROOT

    frames, _ = pan_sequence(4)
    write_frames(tmp_path / "in", frames)
    picture = tmp_path / "style.jpg"
    picture.write_bytes((ROOT / "tests" / "data" / "hokusai_poppies.jpg").read_bytes())
    opts = cli.options_from_args(cli.build_parser().parse_args(
        ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--style-image", str(picture)]))
    picture.unlink()   # gone after the options were made: the workers never read the file
    inputs = batch.list_inputs(tmp_path / "in")
    report = batch.run_batch(inputs, tmp_path / "out", opts, workers=2)
    assert len(report.done) == 4
    natural = batch.run_batch(inputs, tmp_path / "natural", pipeline.Options(), workers=1)
    assert len(natural.done) == 4
    a = np.asarray(Image.open(tmp_path / "out" / inputs[0].name), float)
    b = np.asarray(Image.open(tmp_path / "natural" / inputs[0].name), float)
    assert np.abs(a - b).mean() > 3


def test_ray_backend_matches_local(tmp_path):
    ray = pytest.importorskip("ray")
    frames, _ = pan_sequence(3)
    write_frames(tmp_path / "in", frames)
    opts = pipeline.Options(styles="great_wave:0.8")
    inputs = batch.list_inputs(tmp_path / "in")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        r = batch.run_batch(inputs, tmp_path / "ray", opts, workers=2, backend="ray")
    finally:
        ray.shutdown()
    batch.run_batch(inputs, tmp_path / "local", opts, workers=1)
    assert len(r.done) == 3 and not r.failed
    for p in inputs:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "ray" / p.name)),
                              np.asarray(Image.open(tmp_path / "local" / p.name)))


def test_stabilizer_halves_warping_error_without_smearing():
    frames, step = pan_sequence(8)
    opts = pipeline.Options(styles="starry_night")
    per_frame = batch.process_frames(frames, opts)
    stable = batch.process_frames(frames, opts, stabilize=True)
    h, w = frames[0].shape[:2]
    flow = np.zeros((h, w, 2))
    flow[..., 0] = step   # ground truth: frame t at x is frame t-1 at x + step
    e_raw = metrics.warping_error(per_frame, [flow] * (len(frames) - 1))
    e_stable = metrics.warping_error(stable, [flow] * (len(frames) - 1))
    assert e_stable <= 0.5 * e_raw, (e_stable, e_raw)
    ssim = np.mean([metrics.ssim(a.mean(-1), b.mean(-1)) for a, b in zip(stable, per_frame)])
    assert ssim > 0.85, ssim


def test_in_memory_frames_with_alpha_pictures_keep_alpha(tmp_path):
    frames, _ = pan_sequence(2)
    rgba = np.dstack([metrics.to_uint8(frames[0]), np.full(frames[0].shape[:2], 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    report = batch.run_batch([tmp_path / "a.png"], tmp_path / "o", pipeline.Options())
    assert report.done
    assert (np.asarray(Image.open(tmp_path / "o" / "a.png"))[..., 3] == 77).all()
    assert imaging.read_image(tmp_path / "o" / "a.png").alpha is not None
