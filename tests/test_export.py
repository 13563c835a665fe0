"""torchslim.export.onnx: one checked, self-contained file with a dynamic batch, or a clear error."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from torchslim import models
from torchslim.export import ExportError, ExportReport
from torchslim.export import onnx as export_onnx
from torchslim.export.tidy import MODULE_KEY
from torchslim.options import ExportConfig, OptionsError

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = models.create("resnet8", num_classes=4, in_channels=1, width=0.5)
    for m in model.modules():  # non-trivial BatchNorm statistics, so folding them is checked
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_images):
    model = tiny_resnet()
    bundle = tiny_images(shape=(1, 12, 12), train_size=16, test_size=24, eval_batch_size=8)
    path = tmp_path_factory.mktemp("export") / "sub" / "model.onnx"
    report = export_onnx(model.train(), torch.randn(1, 1, 12, 12), path, check_data=bundle.test)
    return model, path, report


def test_export_writes_a_checked_self_contained_file(exported):
    model, path, report = exported
    assert isinstance(report, ExportReport) and path.is_file() and report.bytes == path.stat().st_size
    assert list(path.parent.iterdir()) == [path]  # one file: no external data, no temporary left
    assert report.max_abs_error < 1e-4 and report.max_rel_error < 1e-4
    assert report.checked_batches == [1, 8, 8, 4]  # example, two real batches, another batch size
    assert report.batchnorm_folded == 9 and report.batchnorm_kept == 0
    assert model.training  # exported in eval mode, the caller's mode restored


def test_exported_graph_has_a_dynamic_batch_and_matches_torch(exported):
    model, path, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, 12, 12)
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    model.train()
    assert out.shape == (5, 4)
    assert abs(out - expected).max() < 1e-4


def test_nodes_name_their_module_and_carry_no_local_paths(exported):
    _, path, _ = exported
    graph = onnx.load(str(path)).graph
    assert not any(n.op_type == "BatchNormalization" for n in graph.node)
    keys = {p.key for n in graph.node for p in n.metadata_props}
    assert keys == {MODULE_KEY}
    modules = {p.value for n in graph.node for p in n.metadata_props}
    assert {"stem.0", "layer1.0.conv1", "fc"} <= modules  # the stem conv, BatchNorm folded in
    assert "site-packages" not in path.read_bytes().decode("latin-1")


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # a Python branch on tensor data: torch.export cannot capture it
            return x * 2
        return x


class TraceDiffers(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1 if torch.compiler.is_exporting() else x


def _net(inner: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), inner), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))


@pytest.mark.slow
def test_a_model_that_fails_to_export_names_the_failing_module(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"module '1\.1' \(DataDependent\)") as info:
        export_onnx(_net(DataDependent()), torch.randn(2, 1, 8, 8), path)
    assert "data-dependent" in str(info.value) and "Traceback" not in str(info.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_graph_that_differs_from_the_model_is_not_written(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="differs from the model: max abs error") as info:
        export_onnx(_net(TraceDiffers()), torch.randn(2, 1, 8, 8), path)
    assert "Nothing was written" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_an_example_the_model_rejects_is_named(tmp_path):
    with pytest.raises(ExportError, match=r"example input of shape \(2, 3, 8, 8\)"):
        export_onnx(_net(nn.Identity()), torch.randn(2, 3, 8, 8), tmp_path / "m.onnx")


def test_check_data_of_another_shape_is_named(tmp_path):
    loader = [(torch.randn(4, 1, 9, 9), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ExportError, match=r"check_data batch 0 has shape \(4, 1, 9, 9\)"):
        export_onnx(_net(nn.Identity()), torch.randn(2, 1, 8, 8), tmp_path / "m.onnx", check_data=loader)


def test_fold_batchnorm_is_exact_and_leaves_the_input_alone():
    from torchslim.export import count_batchnorm, fold_batchnorm

    model = tiny_resnet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    x = torch.randn(5, 1, 12, 12)
    assert count_batchnorm(model) > 0 and count_batchnorm(folded) == 0
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fold_batchnorm_names_an_untraceable_model():
    from torchslim.export import fold_batchnorm

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    with pytest.raises(ExportError, match="Branchy.*torch.fx could not trace"):
        fold_batchnorm(Branchy())


def test_tolerances_and_opset_are_options(tmp_path):
    with pytest.raises(OptionsError, match="atol = -1.0 is invalid: Input should be greater than or equal to 0"):
        export_onnx(_net(nn.Identity()), torch.randn(2, 1, 8, 8), tmp_path / "bad.onnx", atol=-1.0)
    # a graph that differs from its model passes a check as loose as the user asks
    loose = ExportConfig(atol=1e3, check_batches=0)
    report = export_onnx(_net(TraceDiffers()), torch.randn(2, 1, 8, 8), tmp_path / "loose.onnx", config=loose)
    assert report.tolerance == {"atol": 1e3, "rtol": 1e-3} and (tmp_path / "loose.onnx").is_file()
    report = export_onnx(_net(nn.Identity()), torch.randn(2, 1, 8, 8), tmp_path / "o18.onnx", opset=18)
    assert report.opset == 18 == onnx.load(str(tmp_path / "o18.onnx")).opset_import[0].version


def test_cli_export_writes_the_graph_and_its_record(tmp_path, capsys):
    import json

    from torchslim import save_model
    from torchslim.cli import main

    data = {"name": "synthetic", "kwargs": {"batch_size": 16, "num_classes": 4, "shape": [1, 12, 12],
                                            "train_size": 32, "val_size": 0, "test_size": 32, "seed": 0}}
    source = save_model(tiny_resnet().eval(), tmp_path / "ckpt", {"data": data})
    out = tmp_path / "onnx"
    assert main(["export", str(source), "--check-batches", "1", "--out", str(out)]) == 0
    info = json.loads((out / "model.json").read_text())
    assert info["data"] == data and info["onnx"]["sha256"]
    assert info["export"]["checked_batches"] == [8, 32, 11]  # the example, one test batch, another batch size
    assert info["export"]["max_abs_error"] < 1e-3 and "wrote" in capsys.readouterr().out
    assert main(["export", str(source), "--opset", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--opset = 0 is invalid: Input should be greater than 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_channels_last_model_exports_the_graph_of_its_standard_layout(tmp_path):
    from torchslim.runtime.graph import graph_macs

    model = tiny_resnet().eval().to(memory_format=torch.channels_last)  # as fit trains convolutions
    report = export_onnx(model, torch.randn(2, 1, 12, 12), tmp_path / "cl.onnx")
    graph = onnx.load(str(tmp_path / "cl.onnx"))
    assert report.batchnorm_kept == 0 and "Transpose" not in {n.op_type for n in graph.graph.node}
    assert graph_macs(graph, [1, 12, 12])[1] == []  # every node's shape is known: MACs are counted
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.weight.is_contiguous(memory_format=torch.channels_last)  # the model is left as it was
