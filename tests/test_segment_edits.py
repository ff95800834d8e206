"""The user's corrections of a Segment output: what they paint shows, an undone stroke
is no edit, and saved corrections reopen as masks (real viewer, the dock's threaded path,
the shipped colonoscopy model)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tmunet import registry

pytestmark = pytest.mark.gui

PLUGIN = "napari-tmunet"


@pytest.fixture
def segmented(make_napari_viewer, qtbot):
    """The colonoscopy sample segmented (binary output) by the dock in its worker."""
    if registry.model_for_modality("colonoscopy") is None:
        pytest.skip("no shipped colonoscopy model")
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    viewer.open_sample(PLUGIN, "colonoscopy")
    widget.image.value = viewer.layers[0]
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    output = widget.last_layer
    assert output.data.dtype == np.uint8 and set(np.unique(output.data)) == {0, 1}
    return viewer, widget, output


def test_a_new_label_painted_on_a_binary_output_is_visible(segmented):
    """napari's "new label" (M) selects 2: it gets a colour of its own, label 1 keeps cyan;
    so after the threshold moves (the binary colours set again)."""
    viewer, widget, output = segmented
    cyan = output.get_color(1)
    output.mode = "paint"
    output.selected_label = int(output.data.max()) + 1  # what "new label" picks
    output.paint((40, 40), output.selected_label, refresh=True)
    for label in (2, 3, 7):
        colour = output.get_color(label)
        assert colour is not None and colour[3] > 0.5 and not np.allclose(colour, cyan), label
    assert output.get_color(0) is None or output.get_color(0)[3] == 0  # background: clear

    fresh = widget._output_of(widget.image.value)
    widget._write_labels(fresh, np.asarray(output.data) > 0)  # a re-threshold's write
    assert output.get_color(1) is not None and np.allclose(output.get_color(1), cyan)
    assert output.get_color(2)[3] > 0.5


def test_an_undone_stroke_leaves_the_output_the_models(segmented, qtbot):
    """Paint, Ctrl+Z: the threshold updates the layer again and Segment replaces it in
    place; a stroke that stays makes it the user's (kept, a new layer next time)."""
    from napari.layers import Labels

    viewer, widget, output = segmented
    made = np.array(output.data)
    output.mode = "paint"
    output.paint((40, 40), 1, refresh=True)
    assert not np.array_equal(output.data, made)
    output.undo()
    np.testing.assert_array_equal(output.data, made)

    widget.threshold.value = 0.8
    assert widget.rederive() is not None
    qtbot.waitUntil(lambda: not widget.deriving, timeout=10_000)
    assert "was edited" not in widget.status.value
    assert not np.array_equal(output.data, made)  # it follows the threshold
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.last_layer is output
    assert [la for la in viewer.layers if isinstance(la, Labels)][-1] is output

    output.paint((40, 40), 1, refresh=True)  # kept this time: the user's correction
    painted = np.array(output.data)
    widget.threshold.value = 0.5
    assert widget.rederive() is None and "was edited" in widget.status.value
    np.testing.assert_array_equal(output.data, painted)


def test_the_threshold_derives_off_the_gui_thread_and_the_last_move_wins(
    segmented, qtbot, monkeypatch
):
    """A derive runs in a worker (a 36 Mpx slide's instance split takes seconds): the
    slider returns at once; moves during it are taken up after it, the last one wins;
    a stroke painted while it runs is kept (the late labels are not written over it)."""
    import threading

    from napari_tmunet import _segment_rederive
    from napari_tmunet.postprocess import LabelOptions, derive_labels

    viewer, widget, output = segmented
    probability = output.metadata["tmunet_probability"]
    gate, calls = threading.Event(), []

    def held_derive(prob, options):  # the real derive, once the test lets it go
        calls.append(threading.current_thread() is threading.main_thread())
        assert gate.wait(30)
        return derive_labels(prob, options)

    monkeypatch.setattr(_segment_rederive, "derive_labels", held_derive)
    widget.threshold.value = 0.9  # the debounce timer starts the derive
    qtbot.waitUntil(lambda: widget.deriving, timeout=5000)
    assert "updating the labels" in widget.status.value
    for value in (0.2, 0.3):  # moved twice more while the first derive is held
        widget.threshold.value = value
        qtbot.wait(300)  # past the debounce: each move asks for a derive
    assert widget.deriving and len(calls) == 1
    gate.set()
    qtbot.waitUntil(lambda: not widget.deriving and len(calls) == 2, timeout=10_000)
    assert calls == [False, False]  # both in worker threads, the middle move skipped
    assert output.metadata["threshold"] == pytest.approx(0.3)
    expected = derive_labels(probability, LabelOptions(threshold=0.3))
    np.testing.assert_array_equal(output.data > 0, expected > 0)

    gate.clear()
    widget.threshold.value = 0.6
    qtbot.waitUntil(lambda: widget.deriving, timeout=5000)
    output.paint((40, 40), 2, refresh=True)  # the user corrects meanwhile
    painted = np.array(output.data)
    gate.set()
    qtbot.waitUntil(lambda: not widget.deriving, timeout=10_000)
    np.testing.assert_array_equal(output.data, painted)
    assert "was edited" in widget.status.value


def test_saved_corrections_reopen_as_masks(segmented, qtbot, tmp_path):
    """Tester4's #9 and #3: a binary output with a second object painted as label 2 saves
    as a 0/255 PNG holding both; an instance output saved as .tif reopens through the
    TM-UNet reader as Labels that Fine-tune and Metrics offer as masks."""
    import napari
    from napari.layers import Labels
    from PIL import Image

    viewer, widget, binary = segmented
    assert binary.metadata["output"] == "binary"
    binary.paint((20, 20), 2, refresh=True)  # a second polyp, napari's "new label"
    expected = np.asarray(binary.data) > 0

    (png,) = napari.save_layers(str(tmp_path / "polyp.png"), [binary], plugin=PLUGIN)

    stored = np.asarray(Image.open(png))
    assert set(np.unique(stored)) == {0, 255}
    np.testing.assert_array_equal(stored > 0, expected)

    widget.output.value = "instances"
    widget.segment()  # the edited binary output is kept; a new layer holds the instances
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    instances = widget.last_layer
    assert instances is not binary and instances.metadata["output"] == "instances"
    instances.paint((20, 20), int(instances.data.max()) + 1, refresh=True)  # one more
    saved = np.array(instances.data)
    assert saved.max() > 1
    napari.save_layers(str(tmp_path / "corrected.tif"), [instances], plugin=PLUGIN)

    (reopened,) = viewer.open(str(tmp_path / "corrected.tif"), plugin=PLUGIN)

    assert isinstance(reopened, Labels) and reopened.metadata["output"] == "instances"
    np.testing.assert_array_equal(reopened.data, saved)
    _, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    _, metrics = viewer.window.add_plugin_dock_widget(PLUGIN, "Metrics")
    assert "corrected" in [name for name, _ in finetune._labels_choices()]
    assert "corrected" in [layer.name for layer in metrics.reference.choices]


def test_a_threshold_moved_while_segment_runs_applies_to_its_result(segmented, qtbot, monkeypatch):
    """Tester7's #9: the run uses the settings of its click; a threshold moved while it
    runs re-derives its result once it is in, and the summary names that threshold."""
    import threading

    from napari_tmunet import _segment_widget
    from napari_tmunet.postprocess import LabelOptions, derive_labels

    viewer, widget, output = segmented
    gate, real_jobs = threading.Event(), _segment_widget.segment_jobs

    def held_jobs(jobs):  # the real run, once the test lets it go
        assert gate.wait(30)
        yield from real_jobs(jobs)

    monkeypatch.setattr(_segment_widget, "segment_jobs", held_jobs)
    made = np.array(output.data)
    widget.segment()
    assert widget.running
    widget.threshold.value = 0.9
    qtbot.wait(300)  # past the debounce: the move asks for a derive
    assert not widget.deriving  # it waits for the run
    np.testing.assert_array_equal(output.data, made)
    gate.set()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)

    assert widget.last_layer is output and widget.threshold.value == pytest.approx(0.9)
    probability = output.metadata["tmunet_probability"]
    expected = derive_labels(probability, LabelOptions(threshold=0.9))
    np.testing.assert_array_equal(output.data > 0, expected > 0)
    assert not np.array_equal(output.data > 0, probability > 0.5 * 255)  # not the run's
    assert output.metadata["threshold"] == pytest.approx(0.9)
    assert "threshold 0.90" in widget.summary.value
    assert f"{np.count_nonzero(expected)} px" in widget.summary.value


def test_a_removed_output_is_not_called_edited(segmented, qtbot):
    """Tester7's #12: after the output layer is deleted, the threshold says it was
    removed (not edited), and Segment makes a new one that the threshold updates."""
    viewer, widget, output = segmented
    viewer.layers.remove(output)
    widget.threshold.value = 0.3
    assert widget.rederive() is None
    assert "was removed" in widget.status.value and "edited" not in widget.status.value
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    fresh = widget.last_layer
    assert fresh is not output and fresh in viewer.layers
    assert fresh.name == output.name
    widget.threshold.value = 0.8
    qtbot.waitUntil(lambda: fresh.metadata["threshold"] == pytest.approx(0.8), timeout=10_000)
    assert "model not run again" in widget.status.value


def close_dock(viewer, widget):
    """Close ``widget``'s dock with napari's X (its title bar's close button)."""
    from qtpy.QtWidgets import QDockWidget

    window = viewer.window._qt_window
    dock = next(d for d in window.findChildren(QDockWidget) if d.widget() is widget.native)
    dock.title.close_button.click()


def test_a_reopened_dock_carries_on_with_its_outputs(segmented, qtbot):
    """Tester7's #10: napari makes a new dock widget when the dock is reopened; it takes
    over the unedited output (the threshold updates it, Segment replaces it, the sliders
    show its settings), and keeps an output edited before the dock was closed."""
    from napari.layers import Labels

    from napari_tmunet.postprocess import LabelOptions, derive_labels

    viewer, widget, output = segmented
    widget.min_size.value = 30
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)
    close_dock(viewer, widget)
    _, reopened = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    assert reopened is not widget
    assert reopened.min_size.value == 30
    assert reopened.threshold.value == pytest.approx(output.metadata["threshold"])

    reopened.threshold.value = 0.8
    qtbot.waitUntil(lambda: "model not run again" in reopened.status.value, timeout=10_000)
    probability = output.metadata["tmunet_probability"]
    expected = derive_labels(probability, LabelOptions(threshold=0.8, min_size=30))
    np.testing.assert_array_equal(output.data > 0, expected > 0)
    names = [layer.name for layer in viewer.layers]
    reopened.segment()
    qtbot.waitUntil(lambda: not reopened.running, timeout=120_000)
    assert reopened.last_layer is output and [la.name for la in viewer.layers] == names

    output.paint((40, 40), 2, refresh=True)  # the user's correction, then close again
    painted = np.array(output.data)
    close_dock(viewer, reopened)
    _, third = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    third.threshold.value = 0.5
    qtbot.waitUntil(lambda: "was edited" in third.status.value, timeout=10_000)
    np.testing.assert_array_equal(output.data, painted)
    third.segment()
    qtbot.waitUntil(lambda: not third.running, timeout=120_000)
    labels = [la for la in viewer.layers if isinstance(la, Labels)]
    assert third.last_layer is not output and labels[-1] is third.last_layer
    np.testing.assert_array_equal(output.data, painted)


def test_a_reopened_dock_says_what_its_outputs_are_and_keeps_their_cut_offs(segmented, qtbot):
    """A reopened dock's summary says what the output it took over is (objects, pixels,
    model, mode and cut-offs, as the run's summary did), also after a re-derive; it takes
    the output's own threshold and confidence (the user's, not the model's): moving one
    slider re-derives with the other as the output had it, and the next Segment keeps
    both instead of the model's."""
    from napari_tmunet.postprocess import LabelOptions, count_objects, derive_labels

    viewer, widget, output = segmented
    model_own = (widget._defaults["threshold"], widget._defaults["min_confidence"])
    assert model_own != pytest.approx((0.4, 0.3))
    widget.threshold.value = 0.4  # the user's cut-offs, not the model's
    widget.min_confidence.value = 0.3
    qtbot.waitUntil(
        lambda: (
            output.metadata["label_options"]["min_confidence"] == pytest.approx(0.3)
            and output.metadata["threshold"] == pytest.approx(0.4)
        ),
        timeout=10_000,
    )
    made = widget.summary.value
    assert "threshold 0.40, confidence 0.30" in made
    close_dock(viewer, widget)
    _, reopened = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")

    image = viewer.layers[0]
    objects = count_objects(output.data)
    area = int(np.count_nonzero(output.data))
    line = reopened.summary.value
    assert line.startswith(f"{image.name}: {objects} object"), line
    assert f"{area} px" in line and "with TM-UNet colonoscopy (resize, " in line
    assert "threshold 0.40, confidence 0.30" in line
    assert "before this dock was opened" in line
    assert line.split(" with ")[0] == made.split(" with ")[0]  # the same counts and time
    assert reopened.threshold.value == pytest.approx(0.4)
    assert reopened.min_confidence.value == pytest.approx(0.3)

    reopened.threshold.value = 0.6  # re-derived with the output's confidence, not the model's
    qtbot.waitUntil(lambda: "model not run again" in reopened.status.value, timeout=10_000)
    assert output.metadata["label_options"]["min_confidence"] == pytest.approx(0.3)
    probability = output.metadata["tmunet_probability"]
    expected = derive_labels(probability, LabelOptions(threshold=0.6, min_confidence=0.3))
    np.testing.assert_array_equal(output.data > 0, expected > 0)
    line = reopened.summary.value
    assert "threshold 0.60, confidence 0.30" in line
    assert line.startswith(f"{image.name}: {count_objects(expected)} object"), line

    reopened.segment()  # the next run keeps the cut-offs on the sliders
    assert reopened.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not reopened.running, timeout=120_000)
    assert reopened.last_layer is output
    assert reopened.threshold.value == pytest.approx(0.6)
    assert reopened.min_confidence.value == pytest.approx(0.3)
    assert output.metadata["label_options"]["min_confidence"] == pytest.approx(0.3)
    assert output.metadata["threshold"] == pytest.approx(0.6)
    line = reopened.summary.value
    assert "threshold 0.60, confidence 0.30" in line and "before this dock" not in line


def test_a_reopened_dock_keeps_the_output_kind_the_user_chose(segmented, qtbot):
    """An output the user turned into instances (the colonoscopy model's own is binary)
    stays instances in a reopened dock: its Output setting shows so, and a re-derive
    keeps the instance ids."""
    viewer, widget, output = segmented
    widget.output.value = "instances"
    qtbot.waitUntil(lambda: output.data.dtype == np.int32, timeout=10_000)
    close_dock(viewer, widget)
    _, reopened = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    assert reopened.output.value == "instances"
    assert " instance" in reopened.summary.value
    reopened.min_size.value = 5
    qtbot.waitUntil(lambda: "model not run again" in reopened.status.value, timeout=10_000)
    assert output.data.dtype == np.int32 and output.metadata["output"] == "instances"


def test_another_model_adds_a_layer_and_the_same_model_replaces_it(segmented, qtbot):
    """Segment again with another model: the first model's output is kept as it was and
    the new one is added, named with its model, so the two can be compared; Segment again
    with that model replaces its own output in place."""
    from napari.layers import Labels

    viewer, widget, first = segmented
    made = np.array(first.data)
    widget.model.value = "TM-UNet ultrasound"
    widget.segment()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    second = widget.last_layer
    assert second is not first and first in viewer.layers
    np.testing.assert_array_equal(first.data, made)
    assert first.metadata["model"] == "TM-UNet colonoscopy"
    assert second.name == f"{first.name} (TM-UNet ultrasound)"
    assert second.metadata["model"] == "TM-UNet ultrasound"

    widget.threshold.value = 0.3
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.last_layer is second and second.metadata["threshold"] == pytest.approx(0.3)
    outputs = [layer for layer in viewer.layers if isinstance(layer, Labels)][1:]  # not mask
    assert outputs == [first, second]
    np.testing.assert_array_equal(first.data, made)


def test_each_model_keeps_its_own_output_to_compare(segmented, qtbot):
    """Tester9's #2: after a second model's run beside the first, the label settings act
    on the output of the model the dock shows, Segment with the first model replaces its
    own output, the outlines and the probability maps go with every output, the
    comparison has a colour of its own, and a reopened dock describes both outputs."""
    from napari.layers import Image, Labels

    viewer, widget, first = segmented
    widget.add_probability.value = True
    widget.model.value = "TM-UNet ultrasound"
    widget.segment()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    second = widget.last_layer
    assert second.name == f"{first.name} (TM-UNet ultrasound)"
    assert not np.allclose(first.get_color(1), second.get_color(1))
    maps = [layer for layer in viewer.layers if isinstance(layer, Image)][1:]  # not the image
    assert [layer.name for layer in maps] == [
        f"{viewer.layers[0].name} probability (TM-UNet ultrasound)"
    ]
    assert viewer.layers.index(maps[0]) < viewer.layers.index(first)  # no washed-out mask
    made_second = np.array(second.data)

    widget.model.value = "TM-UNet colonoscopy"  # back to the first model
    made_first = np.array(first.data)
    widget.threshold.value = 0.8
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)
    assert first.metadata["threshold"] == pytest.approx(0.8)
    assert not np.array_equal(first.data, made_first)
    np.testing.assert_array_equal(second.data, made_second)  # the comparison stays

    widget.outlines.value = True
    assert first.contour > 0 and second.contour > 0
    widget.segment()  # the first model again: its own unedited output is replaced
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    outputs = [layer for layer in viewer.layers if isinstance(layer, Labels)][1:]  # not mask
    assert widget.last_layer is first and outputs == [first, second]
    np.testing.assert_array_equal(second.data, made_second)

    close_dock(viewer, widget)
    _, reopened = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name="Segment")
    lines = reopened.summary.value.splitlines()
    assert len(lines) == 2
    assert "with TM-UNet colonoscopy " in lines[0] and "with TM-UNet ultrasound " in lines[1]
    assert reopened.model.value == "TM-UNet colonoscopy"
    reopened.threshold.value = 0.3
    qtbot.waitUntil(lambda: "model not run again" in reopened.status.value, timeout=10_000)
    assert first.metadata["threshold"] == pytest.approx(0.3)
    np.testing.assert_array_equal(second.data, made_second)


def test_a_remade_output_takes_a_colour_no_shown_output_has(segmented, qtbot):
    """Tester10's #2 and #4: colonoscopy, then ultrasound beside it, the colonoscopy output
    removed and made again: the two shown outputs differ in colour. With a model shown that
    has not run on the image, the threshold moves the newest output and the status names
    that layer and its model."""
    from napari_tmunet._segment_outputs import COLOUR_KEY

    if registry.model_for_modality("nuclei") is None:
        pytest.skip("no shipped nuclei model")
    viewer, widget, first = segmented
    widget.model.value = "TM-UNet ultrasound"
    widget.segment()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    second = widget.last_layer
    viewer.layers.remove(first)
    widget.model.value = "TM-UNet colonoscopy"
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    remade = widget.last_layer
    assert remade is not first and second in viewer.layers
    colours = {remade.metadata[COLOUR_KEY], second.metadata[COLOUR_KEY]}
    assert len(colours) == 2, colours
    assert not np.allclose(remade.get_color(1), second.get_color(1))

    widget.model.value = "TM-UNet nuclei"  # not run on this image
    made = np.array(remade.data)
    widget.threshold.value = 0.9
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)
    assert not np.array_equal(remade.data, made)
    assert widget.status.value.startswith(f"{remade.name!r} (TM-UNet colonoscopy's output): ")


def test_the_sliders_show_the_shown_models_output_settings(segmented, qtbot):
    """Tester10's #3: colonoscopy, then ultrasound at threshold 0.85; back to colonoscopy,
    the Threshold slider reads the value its output was made with, and a re-derive uses
    that value."""
    viewer, widget, first = segmented
    made_at = first.metadata["label_options"]["threshold"]
    widget.model.value = "TM-UNet ultrasound"
    widget.segment()
    assert widget.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    second = widget.last_layer
    widget.threshold.value = 0.85
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)
    assert second.metadata["label_options"]["threshold"] == pytest.approx(0.85)

    widget.model.value = "TM-UNet colonoscopy"
    assert widget.threshold.value == pytest.approx(made_at)
    widget.status.value = ""
    widget.fill_holes.value = not widget.fill_holes.value
    qtbot.waitUntil(lambda: "model not run again" in widget.status.value, timeout=10_000)
    assert first.metadata["label_options"]["threshold"] == pytest.approx(made_at)
    assert f"threshold {made_at:.2f}" in widget.status.value
    assert widget.threshold.value == pytest.approx(made_at)


def test_a_renamed_images_unedited_output_takes_its_new_name(segmented, qtbot):
    """Rename the image, Segment again: the unedited output (replaced in place) and its
    probability map take the image's new name; an output the user renamed keeps that name
    (napari's Save dialog proposes the layer's name; tester20 #8)."""
    viewer, widget, output = segmented
    image = widget.image.value
    image.name = "patient 12 frame"
    widget.add_probability.value = True
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.last_layer is output and output.name == "patient 12 frame labels"
    names = [layer.name for layer in viewer.layers]
    # the sample's reference mask is no output of Segment's: its name stays
    mask = "CVC-ClinicDB 176 mask"
    assert names == ["patient 12 frame", mask, "patient 12 frame probability", output.name]

    output.name = "my polyp mask"
    image.name = "patient 13 frame"
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.last_layer is output and output.name == "my polyp mask"
    names = [layer.name for layer in viewer.layers]
    assert names == ["patient 13 frame", mask, "patient 13 frame probability", "my polyp mask"]
