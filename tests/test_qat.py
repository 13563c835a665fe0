"""Quantization-aware training: ONNX Runtime's grids in torch, trainable, ending in the INT8 artifact."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from onnx_cases import SHAPE, bundle, cnn, workdir
from torchslim import fit
from torchslim.core.errors import TorchSlimError
from torchslim.distill import DistillTask
from torchslim.distill import losses as L
from torchslim.options import OptionsError, QATConfig
from torchslim.quantize import FakeQuantConv, FakeQuantLinear, prepare_qat, qat_int8, run_qat, strip_qat
from torchslim.quantize.fake_quant import ActivationQuant, fake_quant_weight
from torchslim.quantize.qat import wrappers

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained():
    """cnn() fine-tuned 1 epoch with QAT, distilled from the FP32 model, and its INT8 artifact."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    qmodel = prepare_qat(cnn(), bundle().train, calibration_batches=2)
    task = DistillTask(qmodel, cnn(), [(L.create("kd", T=4), 0.9), (L.create("ce"), 0.1)])
    history = fit(task, bundle().train, 1, lr=0.01, schedule="cosine", progress=False)
    art = qat_int8(qmodel, bundle().train, out=workdir() / "qat", test_data=bundle().test,
                   training={"epochs": 1})  # calibration_batches: the 2 the model was prepared with
    torch.set_num_threads(previous)
    return qmodel.eval(), history, art


def test_prepare_wraps_every_layer_and_leaves_the_model_alone():
    qmodel = prepare_qat(cnn(), keep_fp32=["fc"])
    layers = wrappers(qmodel)
    assert set(layers) == {"features.0.0", "features.1.0", "features.2.0", "features.3.0"}
    assert all(isinstance(w, FakeQuantConv) for w in layers.values())
    assert isinstance(qmodel.fc, nn.Linear) and not any(isinstance(m, FakeQuantConv) for m in cnn().modules())
    assert isinstance(wrappers(prepare_qat(cnn()))["fc"], FakeQuantLinear)
    plain = strip_qat(qmodel)
    assert list(plain.state_dict()) == list(cnn().state_dict()) and not wrappers(plain)


def test_weights_are_on_onnx_runtimes_symmetric_per_channel_grid():
    w = torch.randn(6, 3, 3, 3) * torch.linspace(0.1, 2.0, 6).view(6, 1, 1, 1)
    q = fake_quant_weight(w, -127, 127, per_channel=True)
    scale = w.abs().amax(dim=(1, 2, 3)) / 127
    steps = q / scale.view(6, 1, 1, 1)
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= 127 + 1e-4
    assert torch.allclose(q, w, atol=float(scale.max()) / 2 + 1e-6)


def test_observed_activation_ranges_follow_the_data():
    act = ActivationQuant("uint8", momentum=0.5)
    act.calibrating = True
    act(torch.tensor([-1.0, 3.0]))
    act(torch.tensor([0.0, 5.0]))
    assert act.range() == (-1.0, 5.0)  # plain min/max while calibrating
    act.calibrating = False
    act.train()
    out = act(torch.tensor([1.0, 1.0, 9.0]))
    assert act.range() == (0.0, 7.0)  # then an exponential moving average (momentum 0.5)
    scale, zero = act.qparams()
    assert float(scale) == pytest.approx(7.0 / 255) and int(zero) == 0
    assert float(out.max()) == pytest.approx(7.0)  # clipped to the range, on the grid
    act.eval()
    act(torch.tensor([100.0]))
    assert act.range() == (0.0, 7.0)  # frozen in eval mode


def test_learned_ranges_receive_gradients():
    act = ActivationQuant("uint8", learn=True)
    act(torch.tensor([0.0, 1.0]))  # initialised from the first batch
    act.train()
    x = torch.linspace(-0.5, 2.0, 50, requires_grad=True)
    act(x).sum().backward()
    assert act.hi.grad is not None and float(act.hi.grad) > 0  # values above hi pull it up
    assert x.grad[(x > 0) & (x < 1)].eq(1).all() and x.grad[x > 1.01].eq(0).all()


@pytest.mark.slow
def test_qat_trains_with_fit_and_a_teacher(trained):
    qmodel, history, _ = trained
    record = history.epochs[0]
    assert np.isfinite(record["train_loss"]) and record["train_kd"] >= 0
    lo, hi = wrappers(qmodel)["features.1.0"].act.range()
    assert lo == 0.0 and hi > 0  # the input of a conv after ReLU


@pytest.mark.slow
def test_the_artifact_uses_the_ranges_learned_in_qat(trained):
    qmodel, _, art = trained
    info = art.info
    assert info["mode"] == "qat" and "TensorQuantOverrides" in info["qat"]["route"]
    assert art.kernel == "INT8 QDQ U8S8 per-channel" and info["qat"]["layers"] == 5
    learned = info["qat"]["learned_input_ranges"]
    assert len(learned) == 5 and info["quantization"]["fixed_ranges"] == 5
    graph = onnx.load(str(art.path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quantize = {n.input[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    expected = {}
    for layer in wrappers(qmodel).values():
        scale, zero = layer.act.qparams()
        expected[layer.act.range()] = (float(scale), int(zero))
    for tensor, (lo, hi) in learned.items():
        node = quantize[tensor]
        scale, zero = expected[(lo, hi)]
        assert float(inits[node.input[1]]) == pytest.approx(scale, rel=1e-6)
        assert int(inits[node.input[2]]) == zero


@pytest.mark.slow
def test_the_int8_graph_computes_what_qat_trained(trained):
    qmodel, _, art = trained
    graph = onnx.load(str(art.path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    plain = strip_qat(qmodel).eval()
    conv, bn = plain.features[1][0], plain.features[1][1]
    fold = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    trained_grid = fake_quant_weight(conv.weight.detach(), -127, 127, True) * fold.view(-1, 1, 1, 1)
    weight = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "features.1.0.weight_quantized")
    deployed = inits[weight.input[0]].astype(np.float32) * inits[weight.input[1]].reshape(-1, 1, 1, 1)
    # BatchNorm folded after QAT leaves the trained INT8 weights unchanged, channel by channel.
    np.testing.assert_allclose(deployed, trained_grid.numpy(), rtol=1e-4, atol=1e-6)

    x = torch.cat([b[0] for b in list(bundle().test)])
    with torch.no_grad():
        simulated = qmodel(x)
    deployed_out = art(x)
    assert (deployed_out.argmax(1) == simulated.argmax(1)).float().mean() >= 0.97
    assert (deployed_out - simulated).abs().max() <= 0.1 * simulated.abs().max()


def test_bad_qat_input_is_named():
    with pytest.raises(OptionsError, match=r"ranges = \"learnt\" is invalid: Input should be 'observe' or 'learn'"):
        prepare_qat(cnn(), ranges="learnt")
    with pytest.raises(TorchSlimError, match="keep_fp32: no module at path 'fcc'.*Did you mean 'fc'"):
        prepare_qat(cnn(), keep_fp32=["fcc"])
    with pytest.raises(TorchSlimError, match="no Conv or Linear"):
        prepare_qat(nn.Sequential(nn.ReLU()))
    with pytest.raises(TorchSlimError, match="not a QAT model"):
        qat_int8(cnn(), bundle().train)
    with pytest.raises(TorchSlimError, match="yielded no batches"):
        prepare_qat(cnn(), [], calibration_batches=2)
    assert torch.isfinite(prepare_qat(cnn())(torch.randn(2, *SHAPE))).all()  # ranges from the first batch


def test_the_artifact_keeps_what_the_model_was_trained_with():
    qmodel = prepare_qat(cnn(), keep_fp32=["fc"])
    with pytest.raises(OptionsError, match=r"keep_fp32 = \[\] differs from the \[\"fc\"\] the model was prepared"):
        qat_int8(qmodel, bundle().train, keep_fp32=[])
    with pytest.raises(OptionsError, match="per_channel = false differs"):
        qat_int8(qmodel, bundle().train, config=QATConfig(keep_fp32=["fc"], per_channel=False))


def test_run_qat_distils_with_the_kd_term_it_is_given(tmp_path):
    config = QATConfig(calibration_batches=2, teacher="source", T=2.0, kd_weight=0.5)
    model = copy.deepcopy(cnn()).requires_grad_(True)  # cnn() is shared, and a teacher elsewhere (frozen)
    art = run_qat(model, bundle().train, bundle().train, out=tmp_path, progress=False, seed=0, config=config,
                  teacher_label="the FP32 cnn")
    assert all(p.requires_grad for p in model.parameters())  # the model given is not changed
    training = art.info["qat"]["training"]
    assert training["losses"] == "0.5 kd(T=2) + 0.5 ce" and training["teacher"] == "the FP32 cnn"
    assert (training["epochs"], training["lr"], training["schedule"]) == (1, 0.01, "cosine")
    assert art.info["quantization"]["calibration"]["batches"] == 2 and art.kernel.startswith("INT8 QDQ")
    with pytest.raises(OptionsError, match="teacher = 'no-such-model' is neither source"):
        run_qat(cnn(), bundle().train, bundle().train, out=tmp_path / "x", teacher="no-such-model")
    assert not (tmp_path / "x").exists()


def _recipe(tmp_path, teacher, qat: str) -> object:
    import yaml

    recipe = {"version": 1, "name": "qat", "teacher": str(teacher),
              "data": {"name": "synthetic", "batch_size": 32, "augment": False,
                       "options": {"num_classes": 4, "shape": [1, 12, 12], "train_size": 128, "val_size": 64,
                                   "test_size": 64}},
              "measure": {"batch_sizes": [1, 8], "thread_counts": [1], "rounds": 1, "min_seconds": 0.02},
              "strategies": {"teacher": ["load"], "qat": ["load", yaml.safe_load(qat)]}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_the_qat_step_runs_a_recipe_and_its_int8_model_is_measured(tmp_path):
    from torchslim import save_model
    from torchslim.pipeline import compare

    teacher = save_model(copy.deepcopy(cnn()).requires_grad_(True), tmp_path / "teacher")
    recipe = _recipe(tmp_path, teacher, "{qat: {calibration_batches: 2, teacher: source, T: 2}}")
    matrix = compare(recipe, tmp_path / "out", progress=False, log=lambda _: None)
    rows = {r["id"]: r for r in matrix["rows"]}
    row = rows["qat@ort-int8"]
    assert row["runtime"] == "onnxruntime" and row["kernel"].startswith("INT8 QDQ") and row["accuracy"] is not None
    assert row["bytes"] < rows["teacher@ort-fp32"]["bytes"] and row["needs_teacher"]
    steps = json.loads((tmp_path / "out" / "strategies" / "qat.json").read_text())["steps"]
    qat = next(s for s in steps if s["step"] == "qat")
    assert qat["metrics"]["qat"]["training"]["losses"] == "0.9 kd(T=2) + 0.1 ce" and qat["epochs"] == 1


def test_the_qat_step_trains_fewer_epochs_under_quick():
    from torchslim.options import QATConfig
    from torchslim.pipeline.schema import QuickConfig
    from torchslim.pipeline.steps import STEPS

    quick = STEPS.get("qat")().quicken(QATConfig(epochs=5, calibration_batches=16), QuickConfig())
    assert (quick.epochs, quick.calibration_batches) == (1, 4)
