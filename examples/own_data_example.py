# own-data example: writes features the way a user has them (one array per utterance, each of its own length) + a CSV
import pathlib

import numpy as np

rng = np.random.default_rng(0)
emotions = ["joy", "anger", "fear", "sadness", "disgust", "surprise"]
for kind in ("ratings", "emotions"):
    root = pathlib.Path("data/own_example") / kind
    rows = ["id,split,label"]
    for i in range(240):
        split = "train" if i < 160 else "valid" if i < 200 else "test"
        y = int(rng.integers(1, 6)) if kind == "ratings" else int(rng.integers(0, 6))
        for m, dim, gain in (("text", 12, 1.0), ("audio", 5, 0.5), ("vision", 8, 0.3)):
            (root / m).mkdir(parents=True, exist_ok=True)
            frames = rng.normal(size=(int(rng.integers(3, 20)), dim)) + gain * y   # (T_i, D), T_i varies
            np.save(root / m / f"u{i:04d}.npy", frames.astype(np.float32))
        rows.append(f"u{i:04d},{split},{y if kind == 'ratings' else emotions[y]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
