import numpy as np
import pytest
from PIL import Image

from chromastyle import cli
from conftest import ROOT, SAMPLE

POPPIES = ROOT / "tests" / "data" / "hokusai_poppies.jpg"


def write(path, arr):
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    a = write(tmp_path / "a.png", (rng.random((40, 50)) * 255).astype(np.uint8))
    b = write(tmp_path / "b.jpg", (rng.random((30, 20, 3)) * 255).astype(np.uint8))
    return a, b


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_run_one_file(images, tmp_path, capsys):
    out = tmp_path / "out" / "a_color.png"
    assert cli.main(["run", str(images[0]), "-o", str(out), "--style", "starry_night:0.5"]) == 0
    assert Image.open(out).size == (50, 40)
    assert f"wrote {out}" in capsys.readouterr().out


def test_run_several_files_and_variations(images, tmp_path):
    assert cli.main(["run", *map(str, images), "-o", str(tmp_path / "many")]) == 0
    assert listing(tmp_path / "many") == ["a.png", "b.png"]
    assert cli.main(["run", str(images[0]), "-o", str(tmp_path / "vars"), "--variations", "3", "--seed", "7"]) == 0
    outs = [np.asarray(Image.open(tmp_path / "vars" / f"a_v{i}.png"), float) for i in (1, 2, 3)]
    assert len(listing(tmp_path / "vars")) == 3
    assert np.abs(outs[0] - outs[1]).mean() > 0  # different seeds, different results


def test_style_image_with_strength_and_named_styles(images, tmp_path):
    outs = {}
    for name, args in {"natural": [], "picture": ["--style-image", str(POPPIES)],
                       "half": ["--style-image", f"{POPPIES}:0.5"],
                       "mixed": ["--style-image", f"{POPPIES}:0.5", "--style", "starry_night:0.5"]}.items():
        assert cli.main(["run", str(images[0]), "-o", str(tmp_path / f"{name}.png"), *args]) == 0
        outs[name] = np.asarray(Image.open(tmp_path / f"{name}.png"), float)
    change = np.abs(outs["picture"] - outs["natural"]).mean()
    assert change > 5
    assert 0.2 * change < np.abs(outs["half"] - outs["natural"]).mean() < 0.8 * change
    assert np.abs(outs["mixed"] - outs["picture"]).mean() > 1


def test_some_inputs_failing_exit_1_and_the_rest_are_written(images, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert cli.main(["run", str(images[0]), str(bad), "-o", str(tmp_path / "o")]) == 1
    assert listing(tmp_path / "o") == ["a.png"]
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--style", "no_such_style"], "unknown style"),
    (["--style", "starry_night:1.5"], "between 0 and 1"),
    (["--keep-luminance", "--keep-colors"], "not allowed"),
    (["--style-image", "no/such/picture.png"], "--style-image no/such/picture.png: cannot read"),
    (["--style-image", f"{POPPIES}:1.5"], "between 0 and 1"),
])
def test_usage_errors_exit_2_and_write_nothing(images, tmp_path, capsys, args, message):
    code = None
    try:
        code = cli.main(["run", str(images[0]), "-o", str(tmp_path / "out.png"), *args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_bad_files_exit_1_with_one_clear_message(tmp_path, capsys):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for args in (["run", str(empty), "-o", str(tmp_path / "o.png")],
                 ["run", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")],
                 ["run", str(SAMPLE), "-o", str(tmp_path / "o.png"), "--hints", str(empty)],
                 ["run", str(SAMPLE), "-o", str(tmp_path / "o.png"), "--max-pixels", "1000"],
                 ["run", str(SAMPLE), "-o", str(tmp_path / "o.png"), "--model", str(empty)]):
        assert cli.main(args) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("chromastyle: error:") and "Traceback" not in err
    assert listing(tmp_path) == ["empty.png"]


def test_hint_image_of_another_size(images, tmp_path, capsys):
    hints = write(tmp_path / "h.png", np.zeros((5, 5, 4), np.uint8))
    assert cli.main(["run", str(images[0]), "-o", str(tmp_path / "o.png"), "--hints", str(hints)]) == 1
    assert "same size" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_never_overwrites_an_input(images, capsys):
    before = images[0].read_bytes()
    assert cli.main(["run", str(images[0]), "-o", str(images[0])]) == 1
    assert images[0].read_bytes() == before
    assert "overwrite" in capsys.readouterr().err


def test_styles_and_info(capsys):
    assert cli.main(["styles"]) == 0
    out = capsys.readouterr().out
    assert "natural" in out and "starry_night" in out and len(out.splitlines()) >= 17
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "CPUExecutionProvider" in out and "chromastyle-vgg16" in out
