"""The launcher command a reader warning gives (``napari-tmunet FOLDER --from N``), run in
a test's viewer as ``napari-tmunet`` runs it."""

from __future__ import annotations

import re
import shlex


def launcher_words(message: str) -> list[str]:
    """The launcher command a warning names, split as a shell splits it (less the program)."""
    match = re.search(r"napari-tmunet ('[^']*'|\S+) --from \d+", message)
    assert match, message
    words = shlex.split(match.group(0))
    assert words[0] == "napari-tmunet"
    return words[1:]


def open_as_launcher(viewer, words: list[str]) -> list[tuple[str, str]]:
    """Open ``words`` as ``napari-tmunet`` does (its parser, checks and ``_open_paths``)
    in ``viewer``, emptied first; (name, kind) of the layers opened."""
    from napari_tmunet import launch

    viewer.layers.clear()
    args = launch.build_parser().parse_args(words)
    assert launch._paths_problem(args) is None
    launch._open_paths(viewer, args.paths, start=args.start)
    return [(layer.name, layer._type_string) for layer in viewer.layers]
