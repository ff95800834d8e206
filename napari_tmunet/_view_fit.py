"""The one owner of "is the view still the fit?": a picture is fitted to the canvas as it is
shown alone and as docks open and close, and a view the user made is kept (no Qt: napari's
events).

A picture shown alone (the Segment dock shows one frame at a time, ``_segment_frames``) is
fitted to the view when its (y, x) extent differs from that of the picture the view was
made for: a larger one is not shown cut, a smaller one not lost in a corner; one of the
same extent keeps the view, the user's zoom too (:func:`show_alone`).

A dock opened beside napari's canvas (the Metrics dock from the Plugins menu, a wider dock's
tab) narrows the canvas, and one closed widens it; napari keeps its zoom and centre, so a
picture fitted to the canvas went partly out of view (at 1366 x 768, cut on its sides).
While the view is the one napari's last reset view gave (:func:`show_alone` fitting a
picture; napari's own fit of the first layer; the launcher's; the Home button) it is
fitted again to the new size, to the layers that fit was made to. A view the user zoomed,
panned or turned since is kept.

napari 0.9's own reset view (the Home button, the launcher's fit at start, napari's fit of
its first layer) fits all layers, hidden ones too: a folder's 683 x 585 picture was drawn
at zoom 0.15 beside a hidden 4000 x 3000 one. Once a dock watches the viewer, such a reset
is made again for the layers shown while some are hidden (``_Fit.on_reset``).

Each dock calls :func:`keep_fitted` as it is made (once per viewer); :func:`fit_view` fits
the view to some layers and says which layers the fit was made to.
"""

from __future__ import annotations

import weakref

import numpy as np

_FITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # viewer -> _Fit


class _Fit:
    """A viewer's last reset view: the camera it gave, and the layers it fitted (None:
    napari's own, all layers); and the extent of the picture last shown alone."""

    def __init__(self, viewer) -> None:
        self.viewer = weakref.ref(viewer)
        self.camera: tuple | None = None  # (center, zoom, angles) the last reset gave
        self.layers: list | None = None  # weak references to the layers fitted
        self.fitting: list | None = None  # the layers fit_view is fitting now
        # the (y, x) extent of the picture last shown alone (show_alone): the view was
        # fitted to it or the user framed it; None until one is shown
        self.extent: np.ndarray | None = None
        self.watching = False  # keep_fitted follows the viewer's resets and canvas size

    def is_fit(self, viewer) -> bool:
        """Whether ``viewer``'s view is still the one the last reset gave: the user has not
        zoomed, panned or turned it since."""
        return self.camera is not None and _same(_camera_state(viewer), self.camera)

    def on_reset(self, _event=None) -> None:
        """napari reset the view (its own, or :func:`fit_view`'s): keep the camera it gave
        and the layers it fitted. napari's own reset (the Home button, the launcher's)
        fits all layers, the hidden ones too; while some are hidden, the view is fitted to
        those shown instead (:func:`_shown_of_some`)."""
        viewer = self.viewer()
        if viewer is None:
            return
        shown = _shown_of_some(viewer) if self.fitting is None else []
        if shown:
            fit_view(viewer, *shown)  # says a reset again, this time with its layers
            return
        self.camera = _camera_state(viewer)
        self.layers = None if self.fitting is None else [weakref.ref(x) for x in self.fitting]

    def on_canvas_size(self, _event=None) -> None:
        """The canvas changed size: fit the view again when it is still the last reset's,
        to the same layers (those still open; napari's own fit: all layers)."""
        viewer = self.viewer()
        if viewer is None or not self.is_fit(viewer):
            return
        if self.layers is None:
            viewer.reset_view()
            return
        layers = [layer for layer in (ref() for ref in self.layers) if layer in viewer.layers]
        if layers:
            fit_view(viewer, *layers)

    def adopt(self, viewer) -> None:
        """Take the view ``viewer`` shows now for the last reset's when it is one (a dock
        opened after napari fitted the layers): napari's fit of all layers, or of the
        layers shown (napari fits the first layer added; a folder's hidden pictures come
        after it). napari is asked for each fit, and the view put back as it was."""
        before = _camera_state(viewer)
        shown = [layer for layer in viewer.layers if layer.visible]
        for layers in ([], shown):
            if layers:
                fit_view(viewer, *layers)
            else:
                viewer.reset_view()
            if _same(_camera_state(viewer), before):
                return
        _set_camera(viewer, before)
        self.camera = None  # the user's own view: kept


def keep_fitted(viewer) -> None:
    """Fit ``viewer``'s view again when its canvas changes size while the view is still the
    one napari's last reset view gave (see the module docstring); once per viewer."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari passes docks a proxy
    size_event = _canvas_size_event(viewer)
    fit = _fit_of(viewer)
    if fit.watching or size_event is None:
        return
    fit.watching = True
    viewer.events.reset_view.connect(fit.on_reset)
    size_event.connect(fit.on_canvas_size)
    if len(viewer.layers):
        fit.adopt(viewer)


def show_alone(viewer, layer, replaced=()) -> None:
    """The picture ``layer`` is now the only one shown in ``viewer``: fit the view to it
    when its (y, x) extent differs from that of the picture last shown alone, or, before
    one was, from that of a picture in ``replaced`` (those it hid or that were closed);
    one of the same extent keeps the view, the user's zoom too. A view kept that is still
    a fit of :func:`fit_view`'s is from now on ``layer``'s (the same view: the same
    extent), so it is fitted again to ``layer`` as the canvas changes size, also once the
    picture it was fitted to is closed."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    fit = _fit_of(viewer)
    extent = yx_extent(layer)
    before = [fit.extent] if fit.extent is not None else [yx_extent(x) for x in replaced]
    fit.extent = extent
    if any(not np.allclose(extent, other) for other in before):
        fit_view(viewer, layer)
    elif fit.layers is not None and fit.is_fit(viewer):
        fit.layers = [weakref.ref(layer)]


def fit_view(viewer, *layers) -> None:
    """Fit ``viewer``'s view to ``layers`` alone, as napari's reset view fits all layers.
    Where napari cannot fit some layers (before napari 0.6; napari 0.9 with a layer of
    fewer axes than the viewer's, e.g. a picture beside a stack) it fits all layers, the
    hidden ones too: still no picture is cut. The fit is fitted again when the canvas
    changes size (:func:`keep_fitted`)."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    fit = _FITS.get(viewer)
    if fit is not None:
        fit.fitting = list(layers)
    try:
        try:
            viewer.reset_view(layers=list(layers))
        except (TypeError, IndexError):
            viewer.reset_view()
    finally:
        if fit is not None:
            fit.fitting = None


def _shown_of_some(viewer) -> list:
    """The layers shown in ``viewer`` when some others are hidden, else none. Why: napari
    0.9's reset view fits all layers, hidden ones too (``_sliced_extent_world_augmented``
    of ``viewer.layers``), so a folder's first picture (683 x 585) was drawn at zoom 0.15,
    fitted to a hidden 4000 x 3000 one, at start, after Segment all and on Home. In napari's
    grid napari's own fit is kept: it lays out the grid's cells."""
    if grid_enabled(viewer):
        return []
    shown = [layer for layer in viewer.layers if layer.visible]
    return shown if 0 < len(shown) < len(viewer.layers) else []


def yx_extent(layer) -> np.ndarray:
    """The layer's (y, x) extent on the canvas: ((y0, x0), (y1, x1)) in world units."""
    return np.asarray(layer.extent.world, dtype=float)[:, -2:]


def _fit_of(viewer) -> _Fit:
    """``viewer``'s record of its view (made on first use)."""
    fit = _FITS.get(viewer)
    if fit is None:
        fit = _FITS[viewer] = _Fit(viewer)
    return fit


def _camera_state(viewer) -> tuple:
    """The camera's (center, zoom, angles)."""
    camera = getattr(viewer, "scene", viewer).camera  # napari 0.9 moved it to the scene
    return tuple(camera.center), float(camera.zoom), tuple(camera.angles)


def _set_camera(viewer, state: tuple) -> None:
    """Put the camera back to ``state`` (:func:`_camera_state`)."""
    camera = getattr(viewer, "scene", viewer).camera
    camera.angles, camera.center, camera.zoom = state[2], state[0], state[1]


def _same(state: tuple, other: tuple) -> bool:
    """Whether two camera states are one view (float noise aside)."""
    return all(np.allclose(a, b, rtol=1e-9, atol=1e-9) for a, b in zip(state, other, strict=True))


def grid_enabled(viewer) -> bool:
    """Whether ``viewer`` shows its layers in napari's grid (napari 0.9: the canvas model's
    ``grid``; before: the viewer's ``grid``, deprecated in 0.9)."""
    grid = getattr(getattr(viewer, "canvas", None), "grid", None)
    if grid is None:
        grid = viewer.grid
    return bool(grid.enabled)


def _canvas_size_event(viewer):
    """The event napari emits when ``viewer``'s canvas changes size (napari 0.9: the
    canvas model's ``size``; before: the viewer's ``_canvas_size``), or None."""
    canvas = getattr(viewer, "canvas", None)
    events = getattr(canvas, "events", None)
    if events is not None and hasattr(events, "size"):
        return events.size
    return getattr(viewer.events, "_canvas_size", None)
