"""Deployment: ONNX parity with PyTorch at several batch sizes, ``embed`` on a folder with a
corrupt file, and distillation into a small student on real Fashion-MNIST images."""

import inspect
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import selfsight
from conftest import assert_reads_back
from selfsight.api import backbone_config
from selfsight.backbones import Backbone, load_backbone
from selfsight.cli import main
from selfsight.distill import Distiller, distill, feature_loss, student_config
from selfsight.eval.extract import extract_features, preprocess
from selfsight.export import export_onnx
from selfsight.export.onnx import resize_matrix
from selfsight.results import ExportResult, FilesSummary

ort = pytest.importorskip("onnxruntime")

TINY_CNN = {"stem_stride": 2, "channels": (8, 16, 32, 64)}
TINY_VIT = {"depth": 2, "embed_dim": 48, "num_heads": 2}


pytestmark = pytest.mark.usefixtures("single_thread")  # one thread (conftest.one_thread)


def make_run(path, name, size, options, seed=0):
    torch.manual_seed(seed)
    backbone = Backbone(backbone_config(name, 1, size, options)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        for m in backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    backbone.save(path)
    return path


def test_resize_matrix_is_torch_antialiased_bilinear():
    x = torch.rand(2, 3, 28, 28)
    for n_out in (20, 14, 28, 40):
        m = resize_matrix(28, n_out)
        ref = F.interpolate(x, size=(n_out, n_out), mode="bilinear", antialias=True,
                            align_corners=False)
        torch.testing.assert_close(m @ x @ m.T, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "size", "options"), [
    ("resnet18", 20, TINY_CNN),  # 28-px images resized to 20 inside the graph
    ("vit_tiny_patch16_224", 28, TINY_VIT),
    ("resnet18", 28, {**TINY_CNN, "standardize": True}),  # the per-image hook in the graph
])
def test_onnx_matches_pytorch_at_two_batch_sizes(tmp_path, fmnist_small, name, size, options):
    run = make_run(tmp_path / "run", name, size, options)
    result = export_onnx(run, images=fmnist_small.subset(np.arange(64)), batch_sizes=(1, 5),
                         latency_batches=(1, 4))
    model = run / "export" / "model.onnx"
    assert model.is_file() and (run / "export" / "export.json").is_file()
    assert result["parity"]["passed"] and result["parity"]["max"] <= 1e-4
    spec = json.loads((run / "export" / "export.json").read_text())
    assert_reads_back(ExportResult, run / "export" / "export.json")
    assert ("zero mean and unit variance" in json.dumps(spec)) == bool(options.get("standardize"))
    assert set(result["latency_ms_per_image"]["onnxruntime"]) == {"1", "4"}
    # Independent check with a fresh session: batch sizes the export never traced.
    backbone = load_backbone(run)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for b in (3, 9):
        pixels = fmnist_small.images[100:100 + b]  # (b, 28, 28, 1) uint8
        got = session.run(None, {"images": np.ascontiguousarray(pixels)})[0]
        with torch.no_grad():
            ref = backbone(preprocess(torch.from_numpy(pixels).permute(0, 3, 1, 2), backbone))
        assert got.shape == (b, backbone.dim)
        assert np.abs(got - ref.numpy()).max() <= 1e-4


def test_onnx_float_input_and_cli(tmp_path, fmnist_small, capsys):
    run = make_run(tmp_path / "run", "resnet18", 28, TINY_CNN)
    result = export_onnx(run, out=tmp_path / "float", images=fmnist_small.images[:16],
                         preprocessing=False, batch_sizes=(2, 6), latency=False)
    assert result["input"]["dtype"] == "float32" and result["parity"]["passed"]
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "cli"),
                 "--no-latency"]) == 0
    out = capsys.readouterr().out
    assert "parity" in out and (tmp_path / "cli" / "model.onnx").is_file()
    saved = json.loads((tmp_path / "cli" / "export.json").read_text())
    assert "random" in saved["parity"]["inputs"]  # a run without config.yaml says so


def image_folder(root, images):
    """PNGs in two sub-folders in a known order, plus a corrupt file."""
    names = []
    for i, img in enumerate(images):
        rel = f"{'ab'[i % 2]}/{i:02d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0]).save(root / rel)
        names.append(rel)
    (root / "a" / "broken.png").write_bytes(b"not a png")
    return names


def test_embed_writes_one_row_per_readable_image(tmp_path, fmnist_small, capsys):
    run = make_run(tmp_path / "run", "resnet18", 28, TINY_CNN)
    images = fmnist_small.images[:10]
    names = image_folder(tmp_path / "imgs", images)
    out = tmp_path / "emb" / "features.npy"
    assert main(["embed", str(run), str(tmp_path / "imgs"), "--out", str(out),
                 "--no-progress"]) == 0
    assert "1 unreadable skipped" in capsys.readouterr().out
    rows = np.load(out)
    meta = json.loads(out.with_name("features.npy.json").read_text())
    assert_reads_back(FilesSummary, out.with_name("features.npy.json"))
    order = sorted(range(len(names)), key=lambda i: names[i])
    assert [f.split("imgs/")[1] for f in meta["files"]] == [names[i] for i in order]
    assert meta["skipped_count"] == 1 and meta["skipped"][0]["file"].endswith("broken.png")
    assert rows.shape == (10, 64) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    ref = extract_features(load_backbone(run), images[order], progress=False).numpy()
    np.testing.assert_allclose(rows, ref, atol=1e-6)


def test_embed_parquet_names_rows_or_asks_for_pyarrow(tmp_path, fmnist_small):
    run = make_run(tmp_path / "run", "resnet18", 28, TINY_CNN)
    out = tmp_path / "e.parquet"
    try:
        import pyarrow.parquet as pq
    except ImportError:
        with pytest.raises(ValueError, match="pyarrow"):
            selfsight.embed(run, fmnist_small.images[:4], out)
        return
    selfsight.embed(run, fmnist_small.images[:4], out, progress=False)
    table = pq.read_table(out)
    assert table.column("file").to_pylist() == [f"arrays/{i}" for i in range(4)]
    assert len(table.column("embedding")[0]) == 64


def test_feature_losses_match_direct_formulas():
    torch.manual_seed(0)
    p, t = torch.randn(6, 5), torch.randn(6, 5)
    torch.testing.assert_close(feature_loss(p, t, "cosine"),
                               1 - F.cosine_similarity(p, t, dim=1))
    u, v = F.normalize(p, dim=1) * 5 ** 0.5, F.normalize(t, dim=1) * 5 ** 0.5
    d = (u - v).abs()
    huber = torch.where(d < 1, 0.5 * d ** 2, d - 0.5).mean(1)
    torch.testing.assert_close(feature_loss(p, t, "smooth_l1"), huber)
    with pytest.raises(ValueError, match="cosine"):
        feature_loss(p, t, "l2")


def test_teacher_stays_frozen_in_eval_mode(tmp_path):
    teacher = load_backbone(make_run(tmp_path / "t", "resnet18", 20, TINY_CNN))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = Distiller(teacher, backbone=student_config(teacher.config, "resnet18", options={
        "channels": (8, 8, 16, 16), "layers": (1, 1, 1, 1)}), config=None)
    model.train()
    assert model.backbone.training and not model.teacher.training
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    loss, _ = model.compute_loss(model.make_views(images))
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_distillation_lowers_its_loss_and_the_student_evaluates(tmp_path, fmnist_small):
    teacher = make_run(tmp_path / "teacher", "resnet18", 20, TINY_CNN)
    student = distill(teacher, "resnet18", tmp_path / "student", data=fmnist_small,
                      batch_size=64, max_steps=60, log_every=2, precision="32-true",
                      progress=False, student_options={"channels": (8, 8, 16, 32),
                                                       "layers": (1, 1, 1, 1)},
                      options={"grid_weight": 0.5, "lr": 0.02})
    losses = [json.loads(line)["pooled_loss"] for line in (student / "metrics.jsonl").read_text()
              .splitlines()]
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    cfg = load_backbone(student).config
    assert (cfg.image_size, cfg.stem_stride, cfg.in_chans) == (20, 2, 1)  # the teacher's
    sig = inspect.signature(selfsight.evaluate).parameters
    quick = {"full": False} if "full" in sig else {}
    result = selfsight.evaluate(student, data=fmnist_small, linear=False, pixels=False,
                                progress=False, device="cpu", **quick)
    assert result["knn_k20"] > 0.3


def test_distill_cli_writes_a_student_run(tmp_path, fmnist_small, capsys):
    teacher = make_run(tmp_path / "teacher", "resnet18", 20, TINY_CNN)
    data = tmp_path / "imgs"
    image_folder(data, fmnist_small.images[:40])
    args = ["distill", str(teacher), "--data", str(data), "--out", str(tmp_path / "s"),
            "--student-set", "channels=8,8,16,16", "--student-set", "layers=1,1,1,1",
            "--batch-size", "16", "--max-steps", "2", "--precision", "32-true", "--no-progress"]
    assert main(args) == 0
    assert "student run folder" in capsys.readouterr().out
    assert load_backbone(tmp_path / "s").config.model_kwargs["layers"] == (1, 1, 1, 1)
    assert json.loads((tmp_path / "s" / "skipped_files.json").read_text())["count"] == 1
    assert main([*args[:5], str(tmp_path / "s2"), "--set", "los=cosine"]) == 2
    assert "loss" in capsys.readouterr().err  # the valid keys are listed
