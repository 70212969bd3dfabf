"""`selfsight report`: a real tiny run and its evaluation, rendered in headless Chromium, where
every embedded image must decode; figures that cannot be drawn are listed with the reason; the
retrieval maths."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import selfsight
from conftest import assert_reads_back
from selfsight.cli import main
from selfsight.eval.label_efficiency import FinetuneRecipe
from selfsight.eval.neighbours import distinct_pairs, nearest_neighbours, pick_queries
from selfsight.reports import report
from selfsight.reports.charts import label_efficiency_curve
from selfsight.reports.html import Card, Section, data_uri, page
from selfsight.reports.page import run_facts
from selfsight.reports.style import new_figure, png_bytes
from selfsight.results import EvalResult, ExploreResult, LabelEfficiency
from selfsight.summaries import (
    detail_rows,
    efficiency_rows,
    headline_rows,
)

CHROMIUM = Path("/usr/bin/chromium")
FIGURES = ("training", "embedding", "confusion", "retrieval", "per_class", "label_efficiency",
           "knn_sweep", "robustness", "near_duplicates")
# Appended to a copy of the page: after load, count the images and those that did not decode.
PROBE = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
         " const d = document.createElement('div'); d.id = 'imgcheck';"
         " d.setAttribute('data-total', imgs.length);"
         " d.setAttribute('data-broken', imgs.filter(i => !i.complete || i.naturalWidth === 0)"
         ".length); document.body.appendChild(d); });</script>")


def decoded_images(page: Path, tmp: Path) -> tuple[int, int, str]:
    """(images, images that failed to decode, the DOM after load) from headless Chromium."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (scripts/bootstrap.sh installs it)")
    probe = tmp / f"probe-{page.parent.name}.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                     encoding="utf-8")
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp / 'chromium-profile'}",
         "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    check = re.search(r'<div id="imgcheck" data-total="(\d+)" data-broken="(\d+)"', dom)
    assert check, f"the load probe did not run; DOM starts: {dom[:300]}"
    return int(check[1]), int(check[2]), dom


def save_split(root: Path, split: str, data: selfsight.data.ImageSet) -> None:
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        folder = root / split / data.classes[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fmnist_small):
    """A real run: 2 epochs of SimCLR on 160 Fashion-MNIST images (online kNN each epoch), the
    real `selfsight.evaluate` on 60 test images (one a copy of a training image), and
    stand-ins for what it does not write."""
    root = tmp_path_factory.mktemp("report")
    labels = fmnist_small.labels
    take = np.concatenate([np.flatnonzero(labels == c)[:22] for c in range(10)])
    data = root / "images"
    train_idx = np.sort(take.reshape(10, 22)[:, :16].ravel())
    test_idx = np.sort(take.reshape(10, 22)[:, 16:].ravel())
    train, test = fmnist_small.subset(train_idx), fmnist_small.subset(test_idx)
    # Planted near-duplicate: one test image is a copy of a training image of its class.
    test.images[0] = train.images[np.flatnonzero(train.labels == test.labels[0])[0]]
    save_split(data, "train", train)
    save_split(data, "test", test)
    run = selfsight.pretrain(
        str(data), "simclr", "resnet18", root / "run", epochs=2, batch_size=32, image_size=20,
        max_steps=10, precision="32-true", progress=False, knn_every=1, log_every=2,
        backbone_options={"stem_stride": 2, "channels": (8, 16, 32, 64)},
        options={"proj_hidden_dim": 64})
    selfsight.evaluate(run, str(data), linear=False, progress=False,
                       label_fractions=(0.25, 1.0), seeds=(0, 1),
                       recipe=FinetuneRecipe(epochs=1, min_steps=2, distill_epochs=1))
    return run


def test_report_renders_every_figure_in_chromium(tiny_run, tmp_path, capsys):
    assert main(["report", str(tiny_run), "--out", str(tmp_path / "page"), "--no-progress"]) == 0
    page = tmp_path / "page" / "index.html"
    assert str(page) in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    for key in FIGURES:
        assert (tmp_path / "page" / f"{key}.png").is_file(), key
        assert f'id="fig-{key}"' in html, key
    # Offline: nothing fetched from anywhere, every image a data URI.
    assert not re.search(r'(src|href)="(?!data:image/png;base64,)|@import|url\(', html)
    assert "Not drawn" not in html and "A quick evaluation" not in html
    # The label-efficiency numbers sit under their curve: each arm's mean over seeds.
    study = json.loads((tiny_run / "eval" / "images_label_efficiency.json").read_text())
    card = html[html.index('id="card-label_efficiency"'):]
    card = card[:card.index("</section>")]
    for arm in ("pretrained", "scratch", "linear", "pretrained_distilled"):
        assert f"{study['mean'][arm]['0.25']:.3f} \u00b1 {study['std'][arm]['0.25']:.3f}" in card
    total, broken, dom = decoded_images(page, tmp_path)
    assert (total, broken) == (len(FIGURES), 0)
    assert all(f'id="fig-{key}"' in dom for key in FIGURES)
    # The headline numbers are the evaluation's own.
    result = json.loads((tiny_run / "eval" / "images.json").read_text())
    assert f"{result['knn_k20']:.3f}" in html and f"{result['knn_k200']:.3f}" in html


def test_explore_then_report_draws_the_clusters_of_unlabelled_images(tiny_run, tmp_path,
                                                                     capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "report", "eval"))
    images = tiny_run.parent / "images"  # 220 real garments; one test image copies a train one
    assert main(["explore", str(run), str(images), "--max-clusters", "6", "--suggest", "12",
                 "--no-progress"]) == 0
    said = capsys.readouterr().out
    result = json.loads((run / "eval" / "images_explore.json").read_text())
    assert_reads_back(ExploreResult, run / "eval" / "images_explore.json")
    assert result["images"] == 220 and 2 <= result["n_clusters"] <= 6
    assert sum(c["size"] for c in result["clusters"]) == 220
    assert f"220 images in {result['n_clusters']} clusters" in said
    assert result["agreement_with_labels"]["classes"] == 10  # the folder's class sub-folders
    rows = (run / "eval" / "images_clusters.csv").read_text().splitlines()
    assert rows[0] == "file,cluster,similarity_to_centre" and len(rows) == 221
    # The planted copy is found: test/<its class>/0.png and the training image it repeats.
    files = [row.split(",")[0] for row in rows[1:]]
    pairs = {tuple(sorted(Path(files[i]).parts[-3] for i in pair[:2]))
             for pair in result["near_duplicates"]["examples"]}
    assert ("test", "train") in pairs
    # Twelve different images to label first, in the CSV in pick order, covering most classes.
    picked = (run / "eval" / "images_to_label.csv").read_text().splitlines()
    assert picked[0] == "order,file,pick_cluster,typicality" and len(picked) == 13
    assert [int(row.split(",")[0]) for row in picked[1:]] == list(range(1, 13))
    assert len({row.split(",")[1] for row in picked[1:]}) == 12
    assert result["to_label"]["classes_covered"] >= 6 and "12 images to label first" in said
    page = report(run, progress=False)
    html = page.read_text(encoding="utf-8")
    keys = ("clusters", "map", "silhouette", "retrieval", "to_label", "duplicates")
    for key in keys:
        assert f'id="fig-explore_{key}"' in html, key
    assert "Without labels: images" in html and "Not drawn" not in html
    assert (len(keys) + 1, 0) == decoded_images(page, tmp_path)[:2]  # + the training curves


def test_probe_catches_an_image_that_does_not_decode(tmp_path):
    page = tmp_path / "bad" / "index.html"
    page.parent.mkdir()
    good = data_uri(png_bytes(new_figure(1, 1)))
    page.write_text("<html><body><img src='data:image/png;base64,iVBORw0KGgoAAAA'>"
                    f"<img src='{good}'></body></html>")
    assert decoded_images(page, tmp_path)[:2] == (2, 1)


def test_missing_sections_are_skipped_with_notes(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "report"))
    today = ("data", "train_images", "test_images", "backbone", "knn_k20", "knn_k200",
             "linear_top1", "pixels_knn_k20", "pixels_knn_k200")
    result = json.loads((run / "eval" / "images.json").read_text())
    (run / "eval" / "images.json").write_text(json.dumps({k: result[k] for k in today
                                                          if k in result}))
    (run / "eval" / "images_predictions.npz").unlink()
    (run / "eval" / "images_label_efficiency.json").unlink()
    (run / "eval" / "drift.json").write_text(json.dumps({"mmd2": 0.1}))  # not an eval set
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records
                                               if "online_knn" not in r))
    page = report(run, progress=False)
    assert page == run / "report" / "index.html"  # the default output folder
    html = page.read_text(encoding="utf-8")
    assert sorted(p.name for p in page.parent.glob("*.png")) == ["training.png"]
    for key in FIGURES[1:]:
        assert f'id="card-{key}"' in html and f'id="fig-{key}"' not in html, key
    # Listed together in one card, with the command that would draw them.
    assert html.count("<h3>Not drawn</h3>") == 1
    assert f"selfsight evaluate {run} --data {result['data']}` without --quick" in html
    for what in ("images_predictions.npz", "images_label_efficiency.json", "No online kNN",
                 *(f"no {s} section" for s in ("robustness", "knn_sweep", "per_class",
                                               "near_duplicates"))):
        assert what in html, what
    assert "drift" not in html
    total, broken, _ = decoded_images(page, tmp_path)
    assert (total, broken) == (1, 0)


def test_nearest_neighbours_match_a_brute_force_loop():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(50, 8))
    queries = np.array([0, 7, 49])
    index, sims = nearest_neighbours(feats, queries, k=5)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    for row, q in enumerate(queries):
        scores = [(float(unit[q] @ unit[j]), j) for j in range(len(feats)) if j != q]
        best = sorted(scores, reverse=True)[:5]
        assert index[row].tolist() == [j for _, j in best]
        np.testing.assert_allclose(sims[row], [s for s, _ in best], rtol=1e-5)


def test_queries_cover_different_classes_first():
    labels = np.repeat(np.arange(10), 30)
    queries = pick_queries(labels, 8)
    assert len(set(labels[queries].tolist())) == 8
    queries = pick_queries(np.repeat(np.arange(3), 30), 8)
    assert len(set(queries.tolist())) == 8 and set(np.repeat(np.arange(3), 30)[queries]) == {
        0, 1, 2}


def test_duplicate_examples_show_each_test_image_once_most_similar_first():
    examples = [[3, 10, 0.991], [3, 11, 0.999], [5, 12, 0.995], [7, 13, 0.993], [5, 14, 0.992]]
    assert distinct_pairs(examples, 2) == [[3, 11, 0.999], [5, 12, 0.995]]
    assert [e[0] for e in distinct_pairs(examples, 8)] == [3, 5, 7]


@pytest.mark.parametrize("upper_bound, title", [
    (False, "Same accuracy with 5.27\u00d7 fewer labels"),
    (True, "Same accuracy with up to 5.27\u00d7 fewer labels")])
def test_label_efficiency_title_says_when_the_factor_is_an_upper_bound(upper_bound, title):
    study = {"fractions": [0.01, 1.0], "savings_factor": 5.27,
             "savings_upper_bound": upper_bound,
             "mean": {"pretrained": {"0.01": 0.8, "1.0": 0.9},
                      "scratch": {"0.01": 0.7, "1.0": 0.88}}}
    assert label_efficiency_curve(study).axes[0].get_title() == title


def test_epochs_fact_counts_images_seen_not_the_last_epoch_begun():
    config = {"num_images": 60000}
    # A time budget that stops 37% into the tenth epoch logs its last step as epoch 9.
    records = [{"step": 2197, "epoch": 9, "images_seen": 562432, "elapsed": 600.0}]
    assert dict(run_facts(config, records))["epochs"] == "9.4"
    assert dict(run_facts({}, records))["epochs"] == "10"  # images unknown: epochs begun


@pytest.mark.parametrize("budget, says", [
    ({"steps": 200}, "200$"),
    ({"steps": 200, "validation": {"200": 0.8}, "held_out": 120},
     "200 \\(chosen on a validation hold-out of the labels\\)"),
    ({"steps": 200, "validation": {"200": 0.8}, "held_out": 600, "folds": 5},
     "200 \\(chosen by 5-fold cross-validation on the labels\\)")])
def test_details_say_how_the_fine_tuning_steps_were_chosen(budget, says):
    study = {"recipe": "r", "seeds": [0], "budgets": {"scratch": {"0.01": budget}},
             "savings_factor": 2.0}
    rows = dict(detail_rows(EvalResult(), LabelEfficiency.from_json(study)))
    assert re.fullmatch("1%: " + says, rows["scratch fine-tuning steps"])


def test_efficiency_table_gives_each_arm_and_the_gain_in_points():
    study = {"fractions": [0.01, 1.0], "train_images": 60000,
             "mean": {"pretrained": {"0.01": 0.8274, "1.0": 0.9},
                      "scratch": {"0.01": 0.7827, "1.0": 0.91},
                      "linear": {"0.01": 0.8253, "1.0": 0.89},
                      "pretrained_distilled": {"0.01": 0.83}},
             "std": {"pretrained": {"0.01": 0.0044, "1.0": 0.0},
                     "scratch": {"0.01": 0.01, "1.0": 0.0},
                     "linear": {"0.01": 0.0055, "1.0": 0.0},
                     "pretrained_distilled": {"0.01": 0.002}}}
    assert efficiency_rows(LabelEfficiency.from_json(study)) == [
        ("labels", "fine-tuned", "from scratch", "linear probe", "distilled", "gain"),
        ("1% (\u2248600)", "0.827 \u00b1 0.004", "0.783 \u00b1 0.010", "0.825 \u00b1 0.005",
         "0.830 \u00b1 0.002", "+4.5 pts"),
        ("100% (60,000)", "0.900 \u00b1 0.000", "0.910 \u00b1 0.000", "0.890 \u00b1 0.000",
         "\u2013", "\u22121.0 pts")]


def test_a_half_width_figure_alone_takes_the_whole_row():
    png = png_bytes(new_figure(1, 1))
    cards = [Card("a", "A", "", png=png, wide=True), Card("b", "B", "", png=png),
             Card("c", "C", "", note="absent")]
    html = page("t", "s", [], [Section("one", cards=cards)])
    assert '<section class="card wide" id="card-b">' in html
    assert '<li id="card-c"><b>C</b>: absent</li>' in html
    cards.append(Card("d", "D", "", png=png))
    html = page("t", "s", [], [Section("one", cards=cards)])
    assert '<section class="card" id="card-b">' in html and 'class="card" id="card-d"' in html


def test_headline_has_a_savings_row_only_when_there_is_a_factor():
    result = EvalResult.from_json({"knn_k20": 0.89})
    without = LabelEfficiency(savings_factor=None, savings_note="one fraction run (0.01)")
    assert [r[0] for r in headline_rows(result, without)] == ["kNN top-1, k=20"]
    without.recipe = "r"
    assert dict(detail_rows(result, without))["savings factor"] == "one fraction run (0.01)"
    rows = headline_rows(result, LabelEfficiency(savings_factor=5.27, savings_upper_bound=True))
    assert rows[-1][:2] == ("label savings factor vs scratch", "\u2264 5.27\u00d7")
