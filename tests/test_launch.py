"""``napari-tmunet``'s options (the smoke run itself is in test_segment_widget.py)."""

from _paths import REPO

from napari_tmunet.launch import build_parser


def test_smoke_screenshot_defaults_outside_the_checkout():
    """The README's main command must not rewrite the tracked docs/screenshot.png."""
    args = build_parser().parse_args(["--smoke"])
    assert REPO not in args.screenshot.resolve().parents
    assert build_parser().parse_args(["--screenshot", "x.png"]).screenshot.name == "x.png"
