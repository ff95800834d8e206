"""Layers > Layer Type > Convert to mask (TM-UNet): the selected Image layers that hold a
mask (a mask file opened with File > Open) become Labels layers by the rule for mask files
(``data.images.mask_image_labels``), so a CVC-ClinicDB mask's stray values 1..127 stay
background as when the file is read as a mask. napari's own Convert to Labels keeps every
value, and a Labels layer's every label > 0 is foreground (Metrics, Fine-tune).

napari 0.9 does not let plugins add to the layer list's right-click menu
(``napari/layers/context`` is not a contributable menu), hence the Layers menu.
"""

import weakref

from napari.components import LayerList
from napari.layers import Image, Labels
from napari.utils.notifications import show_info, show_warning

from ._layer_style import as_reference, outline
from ._placement import placement
from ._unsaved import note_kept
from ._widget_common import full_data
from .data.images import mask_image_labels

# Each converted Image layer (held weakly) -> the Labels layer that takes its place: a dock
# that showed the old layer (Metrics' Prediction or Reference) shows the new one in its
# place when it is inserted, as the user chose it (the old one is removed first).
REPLACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def replacement(layer):
    """The layer Convert to mask replaced ``layer`` by, or None."""
    try:
        return REPLACED.get(layer)
    except TypeError:  # not weakly referable (None)
        return None


def convert_to_mask(layers: LayerList) -> None:
    """Replace each selected Image layer that holds a mask by a Labels layer of its mask
    (:func:`mask_layer`), in its place (:data:`REPLACED`), and select the new layers; say
    which selected layers were left as they are and why."""
    chosen = [layer for layer in layers if layer in layers.selection]
    images = [layer for layer in chosen if isinstance(layer, Image)]
    if not images:
        show_warning("Convert to mask: select the image layer of a mask file first.")
        return
    made, refused = [], []
    for layer in images:
        try:
            labels = mask_layer(layer)
        except ValueError as err:
            refused.append(f"{layer.name!r} was left as it is: {err}")
            continue
        index = layers.index(layer)
        REPLACED[layer] = labels  # before the removal, which the docks see first
        layers.pop(index)
        layers.insert(index, labels)
        made.append(labels)
    if made:
        layers.selection = set(made)
        rules = ", ".join(f"{m.name!r} ({m.metadata['mask_rule']})" for m in made)
        show_info(f"Converted to a mask by the mask-file rule: {rules}.")
    if refused:
        show_warning("Convert to mask: " + "; ".join(refused) + ".")


def mask_layer(layer: Image) -> Labels:
    """A Labels layer of the mask that the Image ``layer`` holds, with its name, place
    (:func:`~napari_tmunet._placement.placement`: scale, translate, rotate, shear,
    affine, units and axis labels), visibility and metadata, plus ``path`` (its file, when
    known) and ``mask_rule``, drawn as a reference mask's outlines (``_layer_style``).

    Raises:
        ValueError: it is multiscale, or does not look like a mask (its words say why).
    """
    if layer.multiscale:
        raise ValueError("it is a multiscale image; open the mask file with File > Open instead")
    data, rule = mask_image_labels(full_data(layer), colour=bool(layer.rgb))
    ndim = data.ndim  # a grey + alpha layer has one axis (its channels) more
    metadata = {**(layer.metadata or {}), "mask_rule": rule}
    path = getattr(layer.source, "path", None)
    if path and "path" not in metadata:
        metadata["path"] = str(path)
    kwargs = as_reference({"metadata": metadata}, data)  # drawn as a reference mask's
    labels = Labels(
        data, name=layer.name, visible=layer.visible, **kwargs, **placement(layer, ndim)
    )
    outline(labels)
    note_kept(data)  # as the image's file keeps it: closing napari asks only once it changes
    return labels
