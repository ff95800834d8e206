"""Build hook: the top-level napari.yaml is the one manifest; the build copies it into the
package (napari_tmunet/napari.yaml, which the npe2 entry point names) for wheels and for
editable installs alike. Metadata is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPy(build_py):
    """build_py that first copies napari.yaml into the package (a file, never a link)."""

    def run(self):
        source, target = ROOT / "napari.yaml", ROOT / "napari_tmunet" / "napari.yaml"
        if source.is_file():  # absent only when building from the package folder alone
            target.unlink(missing_ok=True)  # a link left by an old checkout is replaced
            shutil.copyfile(source, target)
        super().run()


setup(cmdclass={"build_py": BuildPy})
