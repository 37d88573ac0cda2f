"""mplmm.utils.atomic_write, the one way files are written in place: the user's umask, no partial files."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

import pytest

from mplmm.data.writers import save_dataset
from mplmm.train import TrainConfig, train
from mplmm.utils import atomic_write, write_json
from tiny_data import tiny_dataset

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under the umask given as its parameter, restoring the process's afterwards."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True)
def test_training_outputs_keep_the_umask(umask: int, tmp_path: Path) -> None:
    """Checkpoints, metrics.json, history.csv and the masks get 0666 & ~umask (0644 under 022, 0600 under 077)."""
    cfg = TrainConfig(model="mult", model_config={"d": 8, "num_heads": 2, "layers": 1}, epochs=1, batch_size=8,
                      device="cpu", progress=False)
    train(cfg, tiny_dataset(12), tmp_path / "run")
    expected = 0o666 & ~umask
    assert expected == (0o644 if umask == 0o022 else 0o600)
    for name in ("best.pt", "last.pt", "metrics.json", "history.csv", "masks_valid.npz", "masks_test.npz"):
        assert oct(mode_of(tmp_path / "run" / name)) == oct(expected), name
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True)
def test_json_and_datasets_keep_the_umask(umask: int, tmp_path: Path) -> None:
    ds = tiny_dataset(4)
    written = [write_json(tmp_path / "a.json", {"x": 1}), save_dataset(ds, tmp_path / "d.npz"),
               save_dataset(ds, tmp_path / "d.pkl", "mmsa_pickle")]
    for path in written:
        assert oct(mode_of(path)) == oct(0o666 & ~umask), path.name


def test_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = write_json(tmp_path / "m.json", {"old": True})

    def boom(fh) -> None:
        fh.write(b"{partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, boom)
    assert target.read_text() == '{\n  "old": true\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_atomic_write_creates_the_folder_and_replaces(tmp_path: Path) -> None:
    path = atomic_write(tmp_path / "new" / "f.bin", lambda fh: fh.write(b"one"))
    atomic_write(path, lambda fh: fh.write(b"two"))
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]
