"""A grey + alpha mask opened with napari's own reader: the hint says it cannot be seen
(tester35 #5).

MoNuSeg's masks are LA PNGs (grey 0/255 and an alpha of the same values). napari's reader
opens one as a (1000, 1000, 2) Image, which it shows as 1000 slices 2 pixels wide on a
slider: nothing to see, and the viewer turns 3-D. The hint named Convert to mask for
painting only; it now says what happened, and that Convert to mask shows it.
"""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS

from napari_tmunet._convert_mask import convert_to_mask
from napari_tmunet._dock_texts import CONVERT_TO_MASK

MONUSEG = DATASETS / "MoNuSeg"
TILE = "TCGA-2Z-A9J9-01A-01-TS1"  # a 1000 x 1000 H&E tile and its LA PNG mask


@pytest.mark.gui
@pytest.mark.skipif(not MONUSEG.is_dir(), reason=f"no datasets at {MONUSEG}")
def test_the_hint_says_a_grey_alpha_mask_cannot_be_seen_as_opened(make_napari_viewer, notices):
    """The tile with the TM-UNet reader, its mask with napari's: the mask layer is
    (1000, 1000, 2) and the viewer 3-D; the Segment dock's hint says so and names Convert
    to mask, which turns it into a 1000 x 1000 Labels layer and the viewer back to 2-D."""
    viewer = make_napari_viewer()
    (picture,) = viewer.open(MONUSEG / "images" / f"{TILE}.tif", plugin="napari-tmunet")
    (mask,) = viewer.open(MONUSEG / "masks" / f"{TILE}.png", plugin="napari")
    assert type(mask).__name__ == "Image" and mask.data.shape == (1000, 1000, 2)
    assert viewer.dims.ndim == 3 and not mask.rgb  # what the user sees: a slider, strips
    viewer.window.add_plugin_dock_widget(plugin_name="napari-tmunet", widget_name="Segment")
    (said,) = [text for text in notices["info"] if "looks like a mask" in text]
    assert said == (
        f"'{mask.name}' looks like a mask (integer values, flat regions), not a picture to "
        "segment. napari's own reader opened it as grey + alpha (1000 x 1000 x 2), shown as "
        "1000 slices 2 pixels wide on a slider: it cannot be seen as it is. To see it, "
        f"{CONVERT_TO_MASK}; the Metrics dock takes it as the reference as it is."
    )
    viewer.layers.selection = {mask}  # what the hint says to do
    convert_to_mask(viewer.layers)
    (converted,) = [layer for layer in viewer.layers if layer is not picture]
    assert type(converted).__name__ == "Labels" and converted.data.shape == (1000, 1000)
    assert viewer.dims.ndim == 2
    assert 0.05 < np.mean(np.asarray(converted.data) > 0) < 0.95  # the nuclei, not a blank
