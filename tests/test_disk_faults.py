"""Full disks, full quotas and read-only folders: every write selfsight makes fails in one line
that names the folder, keeps the previous file whole and leaves no temporary; large writes are
refused before they start; a killed writer's temporary is removed by the next run.

Faults are injected (no real full disk or tmpfs needed): the temporary file a write goes to is
swapped for one that raises ENOSPC after a few bytes, as the kernel does, or its creation raises
the errno a read-only folder gives; ``shutil.disk_usage`` is patched for the up-front checks."""

import contextlib
import errno
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from selfsight import files
from selfsight.errors import NoSpace, NotWritable, UserError
from selfsight.train.checkpoint_io import AtomicCheckpointIO, load_checkpoint

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


class _FillsUp:
    """A temporary file on a disk with ``room`` bytes left: the write that needs more stores
    what fits and raises ENOSPC, as write(2) does."""

    def __init__(self, file, room: int) -> None:
        self._file, self.room = file, room

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self._file.write(data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, NO_SPACE)
        self.room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


def disk_full(monkeypatch, room: int = 0, names: tuple[str, ...] = ("",)) -> None:
    """From now on, temporaries whose name holds one of ``names`` fill up after ``room``."""
    real = files.locked_temporary

    @contextlib.contextmanager
    def filling(tmp):
        with real(tmp) as f:
            yield _FillsUp(f, room) if any(n in Path(tmp).name for n in names) else f

    monkeypatch.setattr(files, "locked_temporary", filling)


def refused(monkeypatch, code: int) -> None:
    """Creating any temporary fails with ``code``, as open(2) does in such a folder."""
    def refuse(tmp):
        raise OSError(code, os.strerror(code), str(tmp))

    monkeypatch.setattr(files, "locked_temporary", refuse)


def free_space(monkeypatch, free: int, under: Path | None = None) -> None:
    """``shutil.disk_usage`` says ``free`` bytes are left (only below ``under`` if given)."""
    real = shutil.disk_usage

    def usage(path):
        if under is not None and not Path(path).is_relative_to(under):
            return real(path)
        return SimpleNamespace(total=10**12, used=10**12 - free, free=free)

    monkeypatch.setattr(shutil, "disk_usage", usage)


def starts(text: str) -> str:
    """A ``match=`` pattern for a message that begins with ``text``."""
    return "^" + re.escape(text)


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


def swallowing(f) -> None:
    """A writer that reports the failed write as its own error, as torch.save does."""
    try:
        f.write(b"x" * 10_000)
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs "
                           "598") from None


WRITERS = {
    "bytes": lambda f: f.write(b"x" * 10_000),
    "numpy": lambda f: np.save(f, np.zeros(10_000)),
    "torch": lambda f: torch.save({"w": torch.zeros(10_000)}, f),
    "swallowed": swallowing,
}


@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_is_one_line_naming_the_folder_and_keeps_the_previous_file(
        tmp_path, monkeypatch, writer):
    target = tmp_path / "out" / "file.bin"
    files.write_text(target, "previous")
    disk_full(monkeypatch, room=100)
    with pytest.raises(NoSpace) as caught:
        files.write_atomic(target, WRITERS[writer], size=80_000)
    message = str(caught.value)
    assert message.startswith(f"{target.parent}: {NO_SPACE} writing file.bin (needs 80.0 kB, ")
    assert message.endswith(" free); free some space or write elsewhere")
    assert "\n" not in message and "unexpected pos" not in message
    assert isinstance(caught.value, UserError) and caught.value.errno == errno.ENOSPC
    assert target.read_text() == "previous"
    assert os.listdir(target.parent) == ["file.bin"]  # no temporary left


@pytest.mark.parametrize(("code", "kind", "says"), [
    (errno.EDQUOT, NoSpace, "Disk quota exceeded writing x.json; free some of your space or "
                            "write elsewhere"),
    (errno.EROFS, NotWritable, "Read-only file system, cannot write x.json; make the folder "
                               "writable or write elsewhere"),
    (errno.EACCES, NotWritable, "Permission denied, cannot write x.json; make the folder "
                                "writable or write elsewhere"),
])
def test_a_full_quota_or_a_read_only_folder_is_one_line(tmp_path, monkeypatch, code, kind, says):
    target = tmp_path / "x.json"
    files.write_json(target, {"good": True})
    refused(monkeypatch, code)
    with pytest.raises(kind) as caught:
        files.write_json(target, {"good": False})
    assert str(caught.value) == f"{tmp_path}: {says}"
    assert caught.value.errno == code
    assert files.read_json(target) == {"good": True}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders: chmod does not block it")
def test_a_folder_made_read_only_with_chmod(tmp_path):
    folder = tmp_path / "ro"
    files.write_text(folder / "x.json", "previous")
    folder.chmod(0o555)
    try:
        with pytest.raises(NotWritable) as caught:
            files.write_text(folder / "x.json", "new")
        assert str(caught.value) == (f"{folder}: Permission denied, cannot write x.json; make "
                                     "the folder writable or write elsewhere")
        with pytest.raises(NotWritable, match=starts(f"{folder}: Permission denied")):
            files.make_folder(folder / "sub")
    finally:
        folder.chmod(0o755)
    assert (folder / "x.json").read_text() == "previous" and not temporaries(tmp_path)


def test_other_errors_are_not_disguised(tmp_path):
    def reads_elsewhere(f):
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/else.png")

    files.write_text(tmp_path / "a.txt", "old")
    with pytest.raises(PermissionError) as caught:
        files.write_atomic(tmp_path / "a.txt", reads_elsewhere)
    assert not isinstance(caught.value, UserError)  # another file's problem keeps its story
    with pytest.raises(TypeError):  # a bug keeps its traceback
        files.write_atomic(tmp_path / "a.txt", lambda f: f.write("text, not bytes"))
    assert (tmp_path / "a.txt").read_text() == "old" and not temporaries(tmp_path)


def test_check_free_space_refuses_in_one_line(tmp_path, monkeypatch):
    free_space(monkeypatch, 5_000)
    files.check_free_space(tmp_path / "not" / "made", 4_000, "four kB")  # enough
    with pytest.raises(NoSpace) as caught:
        files.check_free_space(tmp_path / "not" / "made", 2_500_000, "the thing")
    assert str(caught.value) == (f"{tmp_path / 'not' / 'made'}: not enough free space for the "
                                 "thing: needs 2.5 MB, 5.0 kB free; free some space or write "
                                 "elsewhere")


def test_a_log_line_is_appended_whole_or_not_at_all(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    files.append_line(log, '{"step": 1}')

    class HalfThenFull(io.FileIO):
        def write(self, data):
            super().write(bytes(data[:len(data) // 2]))
            raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(files, "open", lambda path, mode, buffering: HalfThenFull(path, "a"),
                        raising=False)
    with pytest.raises(NoSpace, match=starts(f"{tmp_path}: {NO_SPACE} writing metrics.jsonl")):
        files.append_line(log, '{"step": 2, "loss": 1.5}')
    assert log.read_text() == '{"step": 1}\n'  # half a line would break every reader


# --- checkpoints ------------------------------------------------------------------------------

def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one_loadable(tmp_path, monkeypatch):
    checkpoints = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoints.save_checkpoint({"global_step": 3, "state_dict": {"w": torch.ones(4)}}, path)
    disk_full(monkeypatch, room=1_000)
    with pytest.raises(NoSpace) as caught:
        checkpoints.save_checkpoint({"global_step": 9, "w": torch.zeros(100_000)}, path)
    assert str(caught.value).startswith(f"{path.parent}: {NO_SPACE} writing last.ckpt (")
    assert "unexpected pos" not in str(caught.value)
    assert load_checkpoint(path)["global_step"] == 3
    assert os.listdir(path.parent) == ["last.ckpt"]


def test_stale_temporaries_of_a_run_are_removed_and_live_ones_kept(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    stale = [run / "checkpoints" / ".last.ckpt.tmp", run / ".backbone.safetensors.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")  # no lock: its writer is gone
    with files.locked_temporary(run / ".config.yaml.tmp"):  # a live writer's
        assert sorted(AtomicCheckpointIO.remove_stale_temporaries(run)) == sorted(stale)
        assert temporaries(run) == [run / ".config.yaml.tmp"]
    assert not temporaries(run)  # ended without a rename: deleted


def test_pretrain_on_a_full_disk_says_so_in_one_line_and_stays_resumable(
        tmp_path, monkeypatch, capsys):
    from selfsight.cli import main

    data, run = tmp_path / "images", tmp_path / "run"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(data / f"{i}.png")
    tiny = ["--backbone", "resnet18", "--backbone-set", "stem_stride=2", "--backbone-set",
            "channels=(8,16,32,64)", "--set", "proj_hidden_dim=32", "--precision", "32-true",
            "--no-progress", "--accelerator", "cpu", "--image-size", "16", "--batch-size", "8",
            "--out", str(run)]
    assert main(["pretrain", str(data), "--max-steps", "2", *tiny]) == 0
    capsys.readouterr()
    disk_full(monkeypatch, room=1_000, names=("last.ckpt",))
    assert main(["pretrain", str(data), "--max-steps", "4", "--resume", *tiny]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        f"selfsight: error: {run / 'checkpoints'}: {NO_SPACE} writing last.ckpt (")
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert not temporaries(run)


# --- the decode cache ----------------------------------------------------------------------

def _images(root: Path, n: int = 5) -> list[str]:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / f"{i}.png")
    return sorted(p.name for p in root.iterdir())


def _write(cache: Path, root: Path, relative: list[str]) -> tuple[Path, Path]:
    from selfsight.data.folder_cache import cache_paths, write_cache

    array_path, index_path = cache_paths(cache, root, relative, 8, 1)
    write_cache(array_path, index_path, root, relative, 8, 1, "test", progress=False)
    return array_path, index_path


def test_the_cache_refuses_up_front_when_the_disk_is_short(tmp_path, monkeypatch):
    root, cache = tmp_path / "images", tmp_path / "cache"
    relative = _images(root)
    free_space(monkeypatch, 5_000)
    with pytest.raises(NoSpace) as caught:
        _write(cache, root, relative)
    assert str(caught.value) == (f"{cache}: not enough free space for the decoded-image cache of "
                                 f"{root} (5 images): needs 1.0 MB, 5.0 kB free; free some "
                                 "space or write elsewhere")
    assert list(cache.iterdir()) == []  # nothing created, so nothing can SIGBUS


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_a_cache_whose_space_cannot_be_reserved_is_one_line_and_leaves_nothing(
        tmp_path, monkeypatch):
    root, cache = tmp_path / "images", tmp_path / "cache"
    relative = _images(root)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(os, "posix_fallocate", full)
    says = starts(f"{cache}: {NO_SPACE} writing ") + r"images-\w+\.npy \(needs 1\.0 MB, "
    with pytest.raises(NoSpace, match=says):
        _write(cache, root, relative)
    assert list(cache.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_reserve_space_allocates_the_blocks_of_a_sparse_file(tmp_path):
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(1 << 20)  # a hole, as numpy's memmap makes
        files.reserve_space(f, 1 << 20)
    assert path.stat().st_blocks * 512 >= 1 << 20


def test_a_killed_cache_writers_temporary_is_removed_by_the_next_run(tmp_path):
    root, cache = tmp_path / "images", tmp_path / "cache"
    relative = _images(root)
    cache.mkdir()
    killed = cache / ".x.npy.0123abcd.tmp"
    kill = ("import os, sys\nfrom selfsight.files import locked_temporary\n"
            "with locked_temporary(sys.argv[1]) as f:\n"
            "    f.write(b'x' * 4096)\n    f.flush()\n    os.kill(os.getpid(), 9)\n")
    assert subprocess.run([sys.executable, "-c", kill, str(killed)]).returncode == -9
    older = cache / "x.npy.4242.deadbeef.tmp"  # the name the cache gave them before
    older.write_bytes(b"x" * 4096)
    with files.locked_temporary(cache / ".y.npy.live.tmp"):  # another process still decoding
        array_path, index_path = _write(cache, root, relative)
        assert temporaries(cache) == [cache / ".y.npy.live.tmp"]
    assert array_path.is_file() and index_path.is_file()


# --- embed and ONNX export --------------------------------------------------------------------

def _run(path: Path) -> Path:
    from selfsight.api import backbone_config
    from selfsight.backbones import Backbone

    torch.manual_seed(0)
    Backbone(backbone_config("resnet18", 1, 28, {"stem_stride": 2, "channels": (8, 16, 32, 64)}
                             )).eval().save(path)
    return path


def test_embed_on_a_full_disk_leaves_no_truncated_npy(tmp_path, monkeypatch, capsys):
    from selfsight.cli import main

    run, images = _run(tmp_path / "run"), tmp_path / "images"
    _images(images, n=6)
    out = tmp_path / "emb" / "features.npy"
    files.write_atomic(out, lambda f: np.save(f, np.ones((2, 2), np.float32)))
    disk_full(monkeypatch, room=200, names=("features.npy",))
    assert main(["embed", str(run), str(images), "--out", str(out), "--no-progress"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert said[-1].startswith(f"selfsight: error: {out.parent}: {NO_SPACE} writing "
                               "features.npy (needs 1.5 kB, ")
    assert np.load(out).shape == (2, 2)  # the previous file, whole
    assert os.listdir(out.parent) == ["features.npy"]

    monkeypatch.undo()
    free_space(monkeypatch, 1_000, under=out.parent)  # refused before the images are embedded
    assert main(["embed", str(run), str(images), "--out", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"selfsight: error: {out.parent}: not enough free space for the embeddings features.npy "
        "(6 x 64 float32): needs 1.1 MB, 1.0 kB free; free some space or write elsewhere")


def test_onnx_export_on_a_full_disk_keeps_the_previous_model(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from selfsight.export import export_onnx

    run = _run(tmp_path / "run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        export_onnx(run, check=False, latency=False)
        model = run / "export" / "model.onnx"
        before = model.read_bytes()
        disk_full(monkeypatch, room=1_000, names=("model.onnx",))
        with pytest.raises(NoSpace, match=starts(f"{model.parent}: {NO_SPACE} writing model.onnx")):
            export_onnx(run, check=False, latency=False)
    finally:
        torch.set_num_threads(threads)
    assert model.read_bytes() == before
    assert sorted(os.listdir(model.parent)) == ["export.json", "model.onnx"]
