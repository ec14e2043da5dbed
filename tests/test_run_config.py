"""The typed run configuration, the scene choice and the simulator options (plain logic)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from optimizer.cli import build_parser
from optimizer.cli.options import simulator_options
from optimizer.errors import CliError
from optimizer.run_config import RunConfig
from optimizer.scene_ref import BLEND, SceneRef
from optimizer.session import SimulatorOptions
from optimizer.tasks.factory import make_task


def test_run_config_round_trips_and_refuses_unknown_keys(tmp_path):
    cfg = RunConfig(scene="clevr", method="autosimulate", options={"k": 8}, budget_images=64,
                    out=str(tmp_path / "run"), fix=["obj*"],
                    simulator=SimulatorOptions(server=("tcp://127.0.0.1:1",), threads=1))
    cfg.save()
    again = RunConfig.load(tmp_path / "run")
    assert again == cfg and again.simulator.server == ("tcp://127.0.0.1:1",)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    # a config written before the simulator options were saved still loads
    old = {k: v for k, v in saved.items() if k != "simulator"}
    assert RunConfig.from_dict(old).simulator == SimulatorOptions()
    with pytest.raises(CliError, match="unknown key.*colour"):
        RunConfig.from_dict({**saved, "colour": 1}, "x/config.json")
    with pytest.raises(CliError, match="--budget-images must be at least 1"):
        RunConfig.from_dict({**saved, "budget_images": 0})


def _args(*argv):
    return build_parser().parse_args(["optimize", "--out", "x", *argv])


def test_simulator_flags_given_on_resume_replace_the_saved_ones():
    saved = SimulatorOptions(listen="tcp://127.0.0.1:5560", threads=1, timeout=30.0)
    kept = simulator_options(_args(), saved)
    assert kept == saved  # nothing given: the saved run's options
    moved = simulator_options(_args("--server", "tcp://127.0.0.1:7", "--threads", "2"), saved)
    assert moved.server == ("tcp://127.0.0.1:7",) and moved.listen is None
    assert moved.threads == 2 and moved.timeout == 30.0
    assert simulator_options(_args()) == SimulatorOptions()
    with pytest.raises(CliError, match="--listen and --server: choose one"):
        simulator_options(_args("--server", "tcp://a:1", "--listen", "tcp://b:2"))
    with pytest.raises(CliError, match="--local-servers must be at least 1"):
        simulator_options(_args("--local-servers", "0"))
    with pytest.raises(CliError, match="--heartbeat-s 0 .* cannot go with --listen"):
        simulator_options(_args("--listen", "tcp://127.0.0.1:5560", "--heartbeat-s", "0"))
    with pytest.raises(CliError, match="--heartbeat-s must be >= 0"):
        simulator_options(_args("--heartbeat-s", "-1"))
    with pytest.raises(CliError, match="--curve nowhere: no such key folder"):
        simulator_options(_args("--curve", "nowhere"))


def test_scene_choice_knows_each_scene_by_its_description(tmp_path):
    assert SceneRef.from_flags("placement").known_task() == "detection"
    assert SceneRef.from_flags("toy").known_task() == "classifier"
    assert SceneRef.from_flags("clevr").defaults().fixed == ("obj*", "color")
    with pytest.raises(CliError, match="unknown scene 'kitchen'; known: toy, clevr, placement"):
        SceneRef.from_flags("kitchen")
    with pytest.raises(CliError, match="unknown scene 'toy'; known: clevr, placement"):
        SceneRef.from_flags("toy", rendered=True)
    with pytest.raises(CliError, match="scene 'clevr' trains a segmentation model, not "
                                       "--task detection"):
        SceneRef.from_flags("clevr", task="detection")
    with pytest.raises(CliError, match="--blend nope.blend: no such file"):
        SceneRef.from_flags("clevr", "nope.blend")
    blend = tmp_path / "mine.blend"
    blend.write_bytes(b"")
    ref = SceneRef.from_flags("clevr", str(blend))
    assert ref.scene == BLEND and ref.label == "mine" and ref.known_task() is None
    assert SceneRef.from_flags("clevr", str(blend), "detection").known_task() == "detection"
    with pytest.raises(CliError, match="--blend renders images"):
        SceneRef.from_flags("clevr", str(blend), "classifier")


def test_a_folder_whose_labels_do_not_fit_the_scene_is_named():
    classes = ["background", "cube", "sphere"]
    masks = SimpleNamespace(masks=np.array([[0, 3]]))
    with pytest.raises(CliError, match="--val: masks hold class 3, the scene has classes 0..2"):
        make_task("segmentation", classes, masks)
    boxes = SimpleNamespace(classes=[np.array([1, 3], np.int32)])  # scene ids: 1, 2 exist
    with pytest.raises(CliError, match="--test: labels hold YOLO class 2, the scene has 2 object"):
        make_task("detection", classes, boxes, flag="--test")
