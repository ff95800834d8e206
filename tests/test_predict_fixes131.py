"""``napari-tmunet-predict`` on real UDIAT and CVC-ClinicDB images (tester30): a --model
unlike an image is warned about as the Segment dock warns, an OUTPUT_DIR that is a file
is said to be one, a small pixel budget reads as a number of pixels, and progress bars
are drawn only on a terminal, never with --no-progress."""

from __future__ import annotations

import io
import shutil
import sys

import pytest
from _checkpoints import tiny_checkpoint
from _paths import POLYP, SCAN

from napari_tmunet import registry
from napari_tmunet.data.budget import describe_pixels
from napari_tmunet.predict_cli import main

needs_datasets = pytest.mark.skipif(
    not (SCAN.is_file() and POLYP.is_file()), reason="shared datasets not present"
)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


@needs_datasets
def test_a_shipped_model_of_another_modality_is_warned_about(images, tmp_path, capsys):
    """--model colonoscopy on an ultrasound scan: the words of the Segment dock's check
    (``registry.users_choice``), on stderr, and the end lines name the image; the
    colonoscopy frame is not warned about. On main: only "2 of 2 images segmented"."""
    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    argv = [str(images), str(tmp_path / "out"), "--model", "colonoscopy", "--device", "cpu"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    said = _warnings(err)
    assert said[0] == (
        "warning: 000002.png: 'TM-UNet colonoscopy' is your --model, but it was trained on "
        "colonoscopy images and this image looks like ultrasound; pass --model "
        "'TM-UNet ultrasound' for such images"
    ), err
    assert said[1:] == [
        "warning: 1 image is unlike what its model was trained on (see above; leave out "
        "--model to give each image the model for its own modality): 000002.png"
    ], err
    assert "2 of 2 images segmented" in err


@needs_datasets
def test_a_fine_tuned_checkpoint_of_another_modality_is_warned_about(images, tmp_path, capsys):
    """--model best.pt whose checkpoint says colonoscopy (as one fine-tuned from the
    colonoscopy model does): the ultrasound scan is warned about, the colonoscopy frame
    not. On main: no warning."""
    best = tiny_checkpoint(tmp_path / "best.pt", metadata={"modality": "colonoscopy"})
    argv = [str(images), str(tmp_path / "out"), "--model", str(best), "--device", "cpu"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    said = _warnings(err)
    assert len(said) == 2 and said[0].startswith(
        f"warning: 000002.png: {str(best)!r} is your --model, but it was trained on "
        "colonoscopy images (its checkpoint says so) and this image looks like ultrasound"
    ), err
    assert said[1].endswith(": 000002.png"), err


@needs_datasets
def test_a_checkpoint_of_the_images_modality_is_not_warned_about(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SCAN, folder / SCAN.name)
    best = tiny_checkpoint(tmp_path / "best.pt", metadata={"modality": "ultrasound"})
    argv = [str(folder), str(tmp_path / "out"), "--model", str(best), "--device", "cpu"]
    assert main(argv) == 0
    assert not _warnings(capsys.readouterr().err)


@needs_datasets
def test_an_output_dir_that_is_a_file_is_said_to_be_one(images, tmp_path, capsys):
    """On main: "cannot write masks to OUTPUT_DIR ...: File exists"."""
    best = tiny_checkpoint(tmp_path / "tiny.pt")
    afile = tmp_path / "afile"
    afile.write_text("the user's notes")
    for output, words in (
        (afile, f"error: OUTPUT_DIR {afile} is a file, not a folder: give the path of a folder"),
        (
            afile / "sub",
            f"error: OUTPUT_DIR {afile / 'sub'} cannot be made: {afile} is a file, not a folder",
        ),
    ):
        assert main([str(images), str(output), "--model", str(best), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(words), err
    assert afile.read_text() == "the user's notes"


@needs_datasets
def test_a_small_pixel_budget_reads_as_pixels(images, tmp_path, capsys):
    """--max-pixels 1000: "1,000 pixels", not "0.0 Mpix" (main)."""
    best = tiny_checkpoint(tmp_path / "tiny.pt")
    argv = [str(images), str(tmp_path / "out"), "--model", str(best), "--device", "cpu"]
    assert main([*argv, "--max-pixels", "1000"]) == 1
    err = capsys.readouterr().err
    assert "1.png: 288x384 pixels (110,592 pixels) is over the pixel budget of 1,000 pixels" in err
    assert "Mpix" not in err
    assert describe_pixels(1 << 28) == "268.4 Mpix"  # large budgets as before


class _Terminal(io.StringIO):
    """stderr as a terminal, where progress bars are drawn."""

    def isatty(self) -> bool:
        return True


@needs_datasets
def test_progress_bars_only_on_a_terminal_and_never_with_no_progress(
    images, tmp_path, monkeypatch, capsys
):
    """stderr redirected (capsys: no terminal): no bars and no cursor codes (main drew
    them, "0tile [00:00, ?tile/s]" and ESC[A); on a terminal the bars are drawn unless
    --no-progress (which main refused: exit 2)."""
    best = tiny_checkpoint(tmp_path / "tiny.pt")
    argv = [str(images), "--model", str(best), "--device", "cpu"]
    assert main([argv[0], str(tmp_path / "log"), *argv[1:]]) == 0
    err = capsys.readouterr().err
    assert "tile/s" not in err and "image/s" not in err and "\x1b[A" not in err, err
    assert "2 of 2 images segmented" in err
    for flags, drawn in (([], True), (["--no-progress"], False)):
        terminal = _Terminal()
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stderr", terminal)
            out = str(tmp_path / f"tty{len(flags)}")
            assert main([argv[0], out, *argv[1:], *flags]) == 0
        text = terminal.getvalue()
        assert ("image/s" in text) == drawn, text
        assert "2 of 2 images segmented" in text
