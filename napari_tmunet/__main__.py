"""``python -m napari_tmunet``: the ``napari-tmunet`` launcher (see ``launch.py``)."""

from .launch import main

if __name__ == "__main__":
    raise SystemExit(main())
