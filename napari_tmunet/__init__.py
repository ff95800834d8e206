"""napari-tmunet: TM-UNet segmentation for napari and a headless trainer.

The core (model, data, metrics, inference, training) imports neither Qt nor napari;
the napari layer lives in the private ``_*.py`` modules named by ``napari.yaml``.
"""

__version__ = "0.1.0"
