"""Training TM-UNet (and U-Net): the engine behind ``napari-tmunet-train`` and Fine-tune.

``fit(TrainConfig(...), run_dir)`` is the whole job; the modules, each one concern:
``config`` (TrainConfig), ``run_data`` (dataset and split), ``schedule``, ``batches``
(images on the device), ``step`` (one optimiser step), ``loss``, ``validation``,
``distributed`` (DDP, synchronised BatchNorm), ``run_folder`` (files, log, resume
state), ``engine`` (the loop's skeleton) and ``finetune`` (the Fine-tune dock's job).
"""

from .config import TrainConfig
from .engine import fit
from .run_folder import RunDirError

__all__ = ["TrainConfig", "fit", "RunDirError"]
