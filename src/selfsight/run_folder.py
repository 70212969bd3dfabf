"""A run folder and every path in it, named once: what ``pretrain`` and ``distill`` write and
what the other verbs read and add (no torch here).

    RUN/config.yaml               the resolved recipe (data, backbone, method, training)
    RUN/metrics.jsonl             one line per logged step
    RUN/skipped_files.json        unreadable input files and why
    RUN/checkpoints/last.ckpt     for --resume
    RUN/backbone.{json,safetensors}
    RUN/eval/<data>.json          evaluate (and <data>_predictions.npz, _label_efficiency.json)
    RUN/eval/<data>_explore.json  explore (and _explore.npz, _clusters.csv, _to_label.csv)
    RUN/eval/drift.json           drift
    RUN/classifier/  RUN/anomaly/  RUN/segmenter/  RUN/segment/  RUN/export/  RUN/report/
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from selfsight.errors import UserError

FASHION_MNIST = "fashion-mnist"


def source_name(data: Any) -> str:
    """The stem of a source's files in RUN/eval: 'fashion-mnist' or the folder's name."""
    return FASHION_MNIST if data == FASHION_MNIST else Path(str(data)).name or "data"


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def create(cls, out: str | Path | None, default_stem: str) -> RunFolder:
        """``out``, or runs/<default_stem>-<time> when None; made if missing."""
        run = cls(out or f"runs/{default_stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        run.root.mkdir(parents=True, exist_ok=True)
        return run

    def __str__(self) -> str:
        return str(self.root)

    # --- what pretrain and distill write -----------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def skipped_files(self) -> Path:
        return self.root / "skipped_files.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.ckpt"

    def read_config(self) -> dict[str, Any]:
        """config.yaml as a dict ({} when the run has none)."""
        if not self.config.is_file():
            return {}
        try:
            loaded = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise UserError(f"{self.config}: not valid YAML ({error})") from None
        return loaded if isinstance(loaded, dict) else {}

    # --- what the other verbs add ------------------------------------------------------------
    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def evaluation(self, data: Any, suffix: str = ".json") -> Path:
        """RUN/eval/<data><suffix>: '.json', '_predictions.npz', '_label_efficiency.json',
        '_explore.json', '_explore.npz', '_clusters.csv', '_to_label.csv'."""
        return self.eval_dir / f"{source_name(data)}{suffix}"

    @property
    def drift(self) -> Path:
        return self.eval_dir / "drift.json"

    @property
    def classifier(self) -> Path:
        return self.root / "classifier"

    @property
    def anomaly(self) -> Path:
        return self.root / "anomaly"

    @property
    def segmenter(self) -> Path:
        return self.root / "segmenter"

    @property
    def segment_dir(self) -> Path:
        return self.root / "segment"

    @property
    def segment_summary(self) -> Path:
        return self.segment_dir / "summary.json"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"
