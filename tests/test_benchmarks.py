"""The benchmark script runs and ends with its machine-readable line (figures are not asserted: no timed tests)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(script: str, *args: str) -> list[str]:
    """stdout lines of ``benchmarks/<script>`` run with ``args`` (fails on a non-zero exit)."""
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=600, check=True).stdout.strip().splitlines()


def test_bench_train_quick_prints_machine_readable_line():
    out = _bench("bench_train.py", "--quick", "--threads", "1", "--device", "cpu", "--amp")  # --amp: CUDA only
    assert re.fullmatch(r"train_samples_per_s=[\d.]+ infer_samples_per_s=[\d.]+ peak_rss_mb=\d+", out[-1]), out[-1]
    assert "fp32" in out[0] and not any(line.startswith("target:") for line in out)  # GPU targets: CUDA only
    assert any(line.startswith("FLOPs per sample: forward") for line in out)


def test_bench_attention_prints_bounds():
    out = _bench("bench_attention.py", "--batch", "2", "--reps", "1", "--threads", "1", "--device", "cpu")
    assert re.fullmatch(r"attention_bound_infer_samples_per_s=[\d.]+ attention_bound_train_samples_per_s=[\d.]+",
                        out[-1]), out[-1]
    assert sum(" x5" in line for line in out) == 6  # the six crossmodal transformers, five layers each
    assert "widths [16]" in out[0]  # CPU rule: MulT's widths 6 and 12 computed at 16


def test_bench_data_prints_timings():
    out = _bench("bench_data.py", "--ids", "500", "--reps", "1")
    assert re.fullmatch(r"synthetic_load_s=[\d.]+ draw_modes_entry_s=[\d.]+ draw_modes_modality_s=[\d.]+ "
                        r"frame_masks_s=[\d.]+", out[-1]), out[-1]
    assert sum("target <" in line for line in out) == 3


def test_bench_curve_prints_both_paths():
    out = _bench("bench_curve.py", "--quick", "--seeds", "1", "--threads", "1", "--device", "cpu")
    assert re.fullmatch(r"old_s=[\d.]+ new_s=[\d.]+ speedup=[\d.]+ max_abs_diff=\S+", out[-1]), out[-1]
    assert out[0].startswith("machine: ") and float(out[-1].rsplit("=", 1)[1]) < 1e-4


def test_bench_pickle_small_run_prints_ratios(tmp_path):
    path = tmp_path / "mosei.pkl"
    out = _bench("bench_pickle.py", "--size", "0.002", "--reps", "1", "--path", str(path), "--delete")
    assert re.fullmatch(r"plain_s=[\d.]+ restricted_s=[\d.]+ load_dataset_s=[\d.]+ wall_ratio=[\d.]+ "
                        r"rss_ratio=[\d.]+ plain_rss_mb=\d+ restricted_rss_mb=\d+", out[-1]), out[-1]
    assert any(line.startswith("machine: ") for line in out) and not path.exists()
    rows = [line.split()[0] for line in out if line.endswith("x") and not line.startswith("load_dataset restricted")]
    assert rows == ["pickle.load", "restricted", "load_dataset", "load_dataset(trust_pickle=True)"]  # one per reader


def test_bench_lengths_prints_both_ratios():
    out = _bench("bench_lengths.py", "--quick", "--reps", "1", "--threads", "1", "--batch", "4", "--device", "cpu")
    assert re.fullmatch(r"mult_ratio=[\d.]+ mplmm_ratio=[\d.]+", out[-1]), out[-1]
    assert out[0].startswith("machine: ")


def test_bench_predict_small_run_prints_ratios(tmp_path):
    path = tmp_path / "mosei_small.pkl"
    out = _bench("bench_predict.py", "--pickle", str(path), "--size", "0.002", "--forward_samples", "64")
    assert re.fullmatch(r"file_gb=[\d.]+ peak_rss_gb=[\d.]+ rss_ratio=[\d.]+ predict_sps=[\d.]+ forward_sps=[\d.]+ "
                        r"speed_ratio=[\d.]+", out[-1]), out[-1]
    assert any(line.startswith("machine: ") for line in out) and path.with_suffix(".predictions.csv").is_file()


SHARED_MOSI = ROOT.parent / "shared/data/mosi_bclstm"


def test_bench_amp_prints_speed_and_drift():
    if not SHARED_MOSI.is_dir():
        import pytest

        pytest.skip(f"shared data not found at {SHARED_MOSI}")
    out = _bench("bench_amp.py", "--epochs", "1", "--reps", "1", "--batch", "2", "--data", str(SHARED_MOSI))
    assert re.fullmatch(r"native=(True|False) fp32_sps=[\d.]+ bf16_sps=[\d.]+ speedup=[\d.]+ max_drift_acc2=[\d.]+ "
                        r"max_drift_mae=[\d.]+", out[-1]), out[-1]
    assert sum(line.startswith(("mult ", "mplmm ")) for line in out) == 12  # 2 models x 2 rates x 3 mask seeds


def test_bench_extract_small_run_prints_per_clip_seconds(tmp_path):
    import importlib.util
    import os
    import shutil

    import pytest

    missing = [m for m in ("av", "opensmile", "silero_vad", "cv2", "transformers", "skimage")
               if importlib.util.find_spec(m) is None]
    if missing or not (shutil.which("espeak-ng") or shutil.which("espeak")):
        why = f"extraction tools missing ({', '.join(missing) or 'espeak-ng'})"
        if os.environ.get("MPLMM_REQUIRE_EXTRACT", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(why)
        pytest.skip(why)
    out = _bench("bench_extract.py", "--clips", "2", "--seconds", "2", "--fps", "10", "--size", "160", "--dir",
                 str(tmp_path))
    assert re.fullmatch(r"audio_s_per_clip=[\d.]+ vision_s_per_clip=[\d.]+ av_wall_s_per_clip=[\d.]+ "
                        r"one_worker_wall_s_per_clip=[\d.]+ text_s_per_clip=[\d.]+ workers=2", out[-1]), out[-1]
    assert out[0].startswith("machine: ") and "every clip extracted: True" in out[-2]
