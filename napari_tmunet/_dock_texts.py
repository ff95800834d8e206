"""What each dock control does, in one sentence: the tooltips of the three docks; and
the Segment dock's fixed explanations."""

from __future__ import annotations

# napari's status bar as the launcher opens the window, and again after each Segment run
START_HINT = "Click Segment in the right-hand dock (research use only)."

# The Segment dock's model explanation while "Checkpoint file..." has no file to run.
NO_CHECKPOINT_REASON = (
    "Choose a checkpoint file (made by napari-tmunet-train or the Fine-tune dock) to run it."
)

# The Segment dock's warning on choosing a CMYK picture that napari's own reader opened.
CMYK_AS_STORED = (
    "a CMYK file, which napari's own reader shows as stored, its inks drawn as RGBA (dark "
    "or black); Segment gives the model its RGB (Pillow's conversion), and "
    "`napari-tmunet FILE` opens it in RGB"
)
# A JPEG that napari's own reader showed as stored, not turned as its EXIF orientation
# says ({turned}: data.images.orientation_applied's words).
EXIF_AS_STORED = (
    "a JPEG that napari's own reader shows as stored, whereas photo viewers show it "
    "{turned}: a mask drawn over it there does not fit it, and Segment follows the pixels "
    "shown; `napari-tmunet FILE` opens it turned"
)

# Where the command is that turns a mask opened as an image into Labels by the mask-file
# rule (_convert_mask.py; napari 0.9 lets plugins add to the Layers menu, not to the layer
# list's right-click menu, whose Convert to Labels keeps a 0/255 mask's stray values).
CONVERT_TO_MASK = "select it and choose Layers > Layer Type > Convert to mask (TM-UNet)"

# How to open a file with this plugin's reader.
_OPEN_WITH_TMUNET = (
    "open it with the TM-UNet reader (File > Open with Plugin > Open File(s)..., then TM-UNet)"
)
# How to open a TIFF in colour: the TM-UNet reader reads its samples as colour.
_OPEN_IN_COLOUR = _OPEN_WITH_TMUNET + " or `napari-tmunet FILE`"
# The Segment dock's words on a TIFF mask the TM-UNet writer saved that napari's own
# reader opened as an image, at scale 1: {name} is the layer's name.
SAVED_MASK_AS_IMAGE = (
    "{name} is a mask saved by TM-UNet, which napari's own reader opened as an image at "
    "scale 1 (not over its picture): "
    + _OPEN_WITH_TMUNET
    + " to get it as Labels with its pixel size and position."
)
# The Segment dock's words on a colour TIFF stored channel-first (planar) that napari's
# own reader opened as {frames} grey frames (its tags say RGB, or ImageJ's CYX): what the
# model is run on.
CHANNEL_FIRST_COLOUR = (
    "run on its {frames} frames as grey: {name} is a channel-first colour TIFF; "
    "File > Open with Plugin > TM-UNet reads it in colour"
)
# ... and on 3 frames of one size read from a file that cannot be checked (not a TIFF).
CHANNEL_FIRST_MAYBE = (
    "its 3 frames of one size look like a colour image read channel-first: if it is one, "
    + _OPEN_IN_COLOUR
)
# ... and on a grey layer that looks like one channel of a colour image split into layers
# (napari's channel_axis, or Split RGB): {name} is the layer's name.
SPLIT_CHANNEL = (
    "{name} looks like one channel of a colour image split into layers: to segment the "
    "colour image, open it as RGB, or stack the three layers into one (select them, "
    "right-click > Merge to RGB, which needs red, green and blue colormaps)"
)

SEGMENT_TIPS = {
    "image": "The image layer to segment; follows the layer you select.",
    "model": "The model to run. Chosen for the image's kind unless you pick "
    "one; a pick trained for that kind is remembered for it, another one only this session.",
    "checkpoint": "A checkpoint file from napari-tmunet-train or Fine-tune; the dialog "
    "opens at the one chosen before, else in your fine-tune runs folder.",
    "device": "Where the model runs: auto uses a GPU when there is one.",
    "mode": "resize: the whole image at the model's input size (as trained on "
    "resized images; a far wider or taller one in windows of its height or width); "
    "tiles: overlapping windows at full resolution (slides, models trained on crops). "
    "The model's default is the mode it was trained in, at any image size.",
    "output": "binary mask, or instances (touching objects split apart); "
    "the model's default is instances for the nuclei model.",
    "threshold": "Foreground where the probability is above this. Moving it "
    "updates the last result at once (the model is not run again).",
    "fill_holes": "Fill background enclosed by an object.",
    "min_size": "Drop objects smaller than this many pixels (with instances, a piece the "
    "split cuts off joins the object it touches).",
    "min_confidence": "Hide objects whose mean probability is below this (0: show all); "
    "follows the model's own, e.g. the ultrasound model's hides faint guesses on images "
    "without a lesion.",
    "outlines": "Draw only the outlines of the labels.",
    "add_probability": "Also add the model's probability as an image layer.",
    "segment_button": "Segment the chosen image.",
    "cancel_button": "Stop now: the forward pass under way stops part way, not after it ends.",
    "segment_all_button": "Segment every image layer, each with the model a Segment click on "
    "it would run (its modality's), and these settings.",
}

FINETUNE_TIPS = {
    "add_pair_button": "Add another image and its corrected mask.",
    "dataset_folder": "Optional: a dataset folder to add: images/ and masks/, or pictures "
    "with their masks beside them (NAME_mask.png).",
    "model": "The model to start from; by default the one that made the mask (with only "
    "a Folder: the shipped model for its images).",
    "checkpoint": "A checkpoint file to start from.",
    "steps": "Training steps (each one batch of random crops).",
    "learning_rate": "Step size of the optimiser; 1e-4 keeps what the model knew.",
    "batch_size": "Crops per step; lower it if memory runs out.",
    "augmentation": "Random changes of the training crops: flips and quarter turns; the "
    "second choice adds zoom, small rotations and colour changes (for images from other "
    "scanners or stains).",
    "device": "Where training runs: auto uses a GPU when there is one.",
    "run_folder": "Where the data, checkpoints and curves are saved (about 92 MB a run). "
    "A path you type is taken at Enter.",
    "start_button": "Save the data, then fine-tune in the background.",
    "stop_button": "Stop after the current step; the best checkpoint is kept.",
    "resume_button": "Continue the stopped run in the run folder.",
    "revert_button": "Make the previous model active again.",
    "use_anyway_button": "Make the fine-tuned model active although it did not clearly "
    "learn your corrections, scored lower on the held-out part (where the fewest of them "
    "are), or the held-out part could not tell the models apart.",
}

METRICS_TIPS = {
    "prediction": "The Labels layer to score (follows the layer you select).",
    "reference": "The reference (ground-truth) mask: a Labels layer, or an image that "
    "looks like a mask (e.g. a mask PNG opened with File > Open).",
    "compute_button": "Compute Dice, IoU, precision, recall and Hausdorff "
    "distances, per 2-D slice and overall; where both layers hold instance ids (one id "
    "per object, e.g. nuclei), also the objects matched, missed and extra, PQ and AJI.",
    "export_button": "Save all rows shown (the tables) as a CSV file.",
    "table": "Pixel scores: one row per 2-D slice, then the mean. The pixel F1 (a slice's "
    "equals its Dice) is in the CSV only: it is no object-detection score.",
    "objects_table": "Object scores, where both layers hold instance ids: one row per 2-D "
    "slice, then all slices' objects together. An object is matched by one of the other "
    "layer where their IoU is over 0.5.",
    "comparison_table": "The starting and the fine-tuned model on the part held out from training.",
}
