"""A run folder and every path in it, named once: what ``pretrain`` and ``distill`` write and
what the other verbs read and add (no torch here).

    RUN/.lock                     held while pretrain or distill trains into RUN (PID, host)
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

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from selfsight.errors import RunFolderTaken, UserError
from selfsight.file_names import file_stem

FASHION_MNIST = "fashion-mnist"


def source_name(data: Any) -> str:
    """The stem of a source's files in RUN/eval: 'fashion-mnist', or the folder's or file's
    name made safe for every file system (``uea:BasicMotions`` -> ``uea-BasicMotions``)."""
    return FASHION_MNIST if data == FASHION_MNIST else file_stem(Path(str(data)).name)


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

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @contextmanager
    def lock(self) -> Iterator[dict[str, Any]]:
        """Hold RUN/.lock while training writes into the folder, so two runs never mix their
        weights, config.yaml and metrics.jsonl. The file is created atomically (O_CREAT|O_EXCL)
        and names its owner (PID, host, start time); a lock whose process is gone on this host is
        stale and taken over with a note; a live one, or one from another host, refuses with one
        line. Yields what the lock file holds; removed on the way out (if still this one's)."""
        mine = take_lock(self.lock_file)
        try:
            yield mine
        finally:
            release_lock(self.lock_file, mine)

    def is_run(self) -> bool:
        """Whether the folder holds anything a selfsight verb wrote: config.yaml, a backbone,
        metrics, evaluations or a segmentation summary."""
        return any(path.is_file() for path in (self.config, self.root / "backbone.json",
                                                 self.metrics, self.segment_summary)) \
            or self.eval_dir.is_dir()

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


# --- the run lock ------------------------------------------------------------------------------
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; assume it lives
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True
    return True


def lock_owner() -> dict[str, Any]:
    """What a lock taken by this process records."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "boot_id": _boot_id(),
            "pid_start": _process_start(pid), "command": " ".join(sys.argv)[:500],
            "token": uuid.uuid4().hex}


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return held if isinstance(held, dict) and isinstance(held.get("pid"), int) else None


def lock_is_stale(held: dict[str, Any]) -> bool:
    """True when the lock's process is certainly gone: it was taken on this host and its PID
    no longer runs, the machine rebooted since, or the PID now belongs to a newer process.
    A lock from another host cannot be checked and never counts as stale."""
    if held.get("host") != socket.gethostname():
        return False
    if held.get("boot_id") and _boot_id() and held["boot_id"] != _boot_id():
        return True
    if not _pid_alive(held["pid"]):
        return True
    started = _process_start(held["pid"])
    return bool(held.get("pid_start") and started and started != held["pid_start"])


def _create(path: Path, owner: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(owner, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def _describe(held: dict[str, Any]) -> str:
    return f"PID {held['pid']} on host {held.get('host', '?')}, since {held.get('started', '?')}"


def take_lock(path: Path, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create ``path`` for ``owner`` (default: this process), taking over a stale lock; raise
    :class:`RunFolderTaken` naming the folder and the holder when another run holds it."""
    owner = owner or lock_owner()
    folder = path.parent
    for _ in range(5):
        if _create(path, owner):
            return owner
        held = _read_lock(path)
        if held is None:
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if age < 10:  # another process is writing its lock right now
                raise RunFolderTaken(f"{folder}: another run is starting in this folder; "
                                     "wait for it to finish or choose another --out")
            raise RunFolderTaken(f"{folder}: {path.name} is unreadable; if no run is using "
                                 f"this folder, delete {path} and try again")
        if not lock_is_stale(held):
            raise RunFolderTaken(f"{folder} is in use by another run ({_describe(held)}); wait "
                                 "for it to finish or choose another --out")
        if _take_over(path, held):
            print(f"note: {path} was left by a run that is no longer running "
                  f"({_describe(held)}); taking the folder over", file=sys.stderr)
    raise RunFolderTaken(f"{folder}: could not take {path.name} (other runs keep taking it); "
                         "choose another --out")


def _take_over(path: Path, held: dict[str, Any]) -> bool:
    """Remove the stale lock ``held``, once: a second lock file guards the take-over so two
    processes that both found it stale cannot both remove it (the second would remove the
    first one's new lock)."""
    guard = path.with_name(path.name + ".takeover")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - guard.stat().st_mtime > 60:  # its process died mid-take-over
                guard.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
        return False
    os.close(fd)
    try:
        current = _read_lock(path)
        if current is None or current.get("token") != held.get("token") \
                or current.get("pid") != held.get("pid"):
            return False  # someone else took it over or released it meanwhile
        path.unlink(missing_ok=True)
        return True
    finally:
        guard.unlink(missing_ok=True)


def release_lock(path: Path, owner: dict[str, Any]) -> None:
    """Remove ``path`` if it is still ``owner``'s lock."""
    held = _read_lock(path)
    if held is not None and held.get("token") == owner.get("token"):
        path.unlink(missing_ok=True)
