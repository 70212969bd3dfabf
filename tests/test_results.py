"""Typed results: the JSON round trip, and the one formatter the CLI and the report share."""

import pytest

from selfsight.errors import UserError
from selfsight.results import (
    AnomalyScores,
    EvalResult,
    ExploreResult,
    FinetuneResult,
    LabelEfficiency,
    Record,
    SegmentResult,
)
from selfsight.run_folder import RunFolder, source_name
from selfsight.summaries import headline_rows, summary_lines, text_table

EVAL = {"run": "r", "data": "fashion-mnist", "train_images": 60, "test_images": 40,
        "backbone": "resnet18", "temperature": 0.1, "knn_k20": 0.81, "knn_k200": 0.79,
        "linear_top1": 0.84, "pixels_knn_k20": 0.7, "pixels_knn_k200": 0.68,
        "few_shot": [{"n_way": 5, "k_shot": 1, "n_query": 15, "episodes": 600, "mean": 0.6,
                      "ci95": 0.01}],
        "clustering": {"n_clusters": 10, "items": 100, "seeds": [0, 1, 2], "accuracy": 0.5,
                       "nmi": 0.4, "ari": 0.3, "std": {"accuracy": 0.02},
                       "pixels": {"n_clusters": 10, "seeds": [0], "accuracy": 0.45,
                                  "nmi": 0.38, "ari": 0.25}},
        "robustness": {"classifier": "kNN", "clean": 0.8, "severities": [1, 5],
                       "corruptions": {"gaussian_noise": [0.7, 0.3], "contrast": [0.75, 0.2]},
                       "mean_corrupted": 0.49},
        "compute": {"device": "cpu", "dtype": "float32", "batch_size": 8,
                    "inference_ms_per_image": 0.5, "train_images_per_sec": None},
        "a_key_from_a_newer_version": [1]}


def test_a_result_reads_back_to_the_same_json_in_the_same_order():
    result = EvalResult.from_json(EVAL)
    assert list(result.to_json().items()) == list(EVAL.items())
    assert result.knn == {20: 0.81, 200: 0.79} and result.pixels_knn[200] == 0.68
    assert result.clustering.pixels.accuracy == 0.45 and result.few_shot[0].k_shot == 1
    assert result.robustness.worst() == ("contrast", 0.2)
    assert result.compute.train_images_per_sec is None  # written as null, kept as null
    assert result.extra == {"a_key_from_a_newer_version": [1]}
    assert result["knn_k20"] == 0.81 and "linear_top1" in result and "precision" not in result


def test_save_and_load_round_trip_and_a_broken_file_is_a_user_error(tmp_path):
    path = EvalResult.from_json(EVAL).save(tmp_path / "eval" / "x.json")
    assert EvalResult.load(path).to_json() == EVAL
    path.write_text("[1]")
    with pytest.raises(UserError, match=r"x\.json: expected a JSON object"):
        EvalResult.load(path)
    path.write_text("{")
    with pytest.raises(UserError, match=r"x\.json: not valid JSON"):
        EvalResult.load(path)


def test_the_headline_shows_ours_against_pixels_with_the_gain():
    rows = headline_rows(EvalResult.from_json(EVAL), None)
    assert rows[0] == ("kNN top-1, k=20", "0.810", "0.700", pytest.approx(0.11))
    assert rows[2] == ("linear probe top-1", "0.840", "\u2013", None)
    assert rows[3][0] == "k-means (10 clusters, mean of 3 seeds): acc / NMI / ARI"
    assert rows[3][1:3] == ("0.500 / 0.400 / 0.300 (acc \u00b1 0.020)", "0.450 / 0.380 / 0.250")
    assert rows[-1][1] == "0.800 / 0.490 / 0.200"  # clean / mean / worst corruption


def test_text_table_aligns_columns():
    table = text_table([("a", "1.0", None), ("long name", "10.25", 0.5)], ("", "x", "gain"))
    lines = table.splitlines()
    assert lines[1].index("1.0") + 3 == lines[2].index("10.25") + 5  # right-aligned numbers
    assert lines[2].endswith("+0.500") and lines[1] == lines[1].rstrip()


@pytest.mark.parametrize("record, expected", [
    (EvalResult.from_json(EVAL), "kNN top-1, k=20"),
    (ExploreResult(images=1200, n_clusters=3, silhouette={"2": 0.1, "3": 0.3},
                   near_duplicates={"pairs": 4}),
     "1,200 images in 3 clusters (silhouette 0.300, the highest of k = 2..3; the largest"),
    (FinetuneResult(labelled_images=60, steps={"steps": 30}, test_top1=0.9, test_images=60,
                    per_class={"classes": ["a"], "accuracy": [0.9]}),
     "60 labelled images, 30 steps (fixed)"),
    (AnomalyScores(count=40, flagged=3, threshold=1.5, threshold_rule="q"),
     "3 of 40 images flagged anomalous"),
    (SegmentResult(method="maskcut", results=[{"instances": [1, 2]}, {"instances": []}]),
     "2 images, 2 instances (maskcut), 0 unreadable skipped"),
])
def test_every_verb_result_has_a_terminal_summary(record, expected):
    assert expected in "\n".join(summary_lines(record))


def test_a_label_efficiency_study_adds_its_table_and_factor():
    study = LabelEfficiency(fractions=[0.1, 1.0], train_images=100, seeds=[0],
                            mean={"pretrained": {"0.1": 0.8, "1.0": 0.9},
                                  "scratch": {"0.1": 0.6, "1.0": 0.85}},
                            savings_factor=4.2, savings_note="n")
    result = EvalResult.from_json({"knn_k20": 0.8})
    result.label_efficiency = study
    printed = "\n".join(summary_lines(result))
    assert "+20.0 pts" in printed and "label savings factor: 4.2x (n)" in printed
    assert "label_efficiency" not in EvalResult.from_json({"knn_k20": 0.8}).to_json()


def test_a_record_without_a_summary_is_a_bug_not_silence():
    with pytest.raises(TypeError):
        summary_lines(Record())


def test_run_folder_names_every_path_once(tmp_path):
    run = RunFolder(tmp_path)
    assert run.evaluation("fashion-mnist") == tmp_path / "eval" / "fashion-mnist.json"
    assert run.evaluation("/data/parts/", "_explore.npz") == tmp_path / "eval" / \
        "parts_explore.npz"
    assert source_name("/data/parts") == "parts"
    assert run.read_config() == {}
    run.config.write_text("data: [unclosed")
    with pytest.raises(UserError, match=r"config\.yaml: not valid YAML"):
        run.read_config()
