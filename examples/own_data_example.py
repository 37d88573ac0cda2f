# own-data example: writes features the way a user has them (one array per utterance, each of its own length) + a CSV.
# Some utterances have no audio or no vision file at all (never recorded): the importer keeps them, with that
# modality absent. data/own_example/new/ holds unlabeled utterances (a CSV with an id column only) to predict on.
import pathlib

import numpy as np

rng = np.random.default_rng(0)
emotions = ["joy", "anger", "fear", "sadness", "disgust", "surprise"]


def write_utterance(root: pathlib.Path, uid: str, y: int, i: int) -> None:
    """One .npy per modality, (T_i, D) with T_i varying; every 11th utterance lacks audio, every 13th vision."""
    for m, dim, gain in (("text", 12, 1.0), ("audio", 5, 0.5), ("vision", 8, 0.3)):
        (root / m).mkdir(parents=True, exist_ok=True)
        if (m == "audio" and i % 11 == 3) or (m == "vision" and i % 13 == 5):
            continue  # nothing recorded: no file
        frames = rng.normal(size=(int(rng.integers(3, 20)), dim)) + gain * y  # (T_i, D), T_i varies
        np.save(root / m / f"{uid}.npy", frames.astype(np.float32))


for kind in ("ratings", "emotions"):
    root = pathlib.Path("data/own_example") / kind
    rows = ["id,split,label"]
    for i in range(240):
        split = "train" if i < 160 else "valid" if i < 200 else "test"
        y = int(rng.integers(1, 6)) if kind == "ratings" else int(rng.integers(0, 6))
        write_utterance(root, f"u{i:04d}", y, i)
        rows.append(f"u{i:04d},{split},{y if kind == 'ratings' else emotions[y]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")

new = pathlib.Path("data/own_example/new")  # 40 new ratings utterances, no labels, no splits
for i in range(40):
    write_utterance(new, f"n{i:03d}", int(rng.integers(1, 6)), i)
(new / "ids.csv").write_text("id\n" + "\n".join(f"n{i:03d}" for i in range(40)) + "\n")
