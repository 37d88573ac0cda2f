"""Vision features: OpenCV's Haar face detector (its cascade files ship in ``cv2.data``; nothing is downloaded) on
frames sampled at a set rate, then per face the box geometry and a descriptor of the face crop: HOG (OpenCV) by
default, or an embedding from the user's TorchScript image model.

Frames without a face are recorded per frame (``face`` flags and times); the vision sequence holds the frames with
a face. No face in any sampled frame, no video stream or an unreadable one: vision absent.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from .config import ExtractConfig

CASCADE = "haarcascade_frontalface_default.xml"
#: HOG over a crop of 4 x 4 cells, blocks of 2 x 2 cells stepping one cell: 9 blocks x 4 cells x 9 orientations
HOG_DIM = 324
GEOMETRY = ("center_x", "center_y", "width", "height")


class FaceExtractor:
    """One per process: the cascade (and the embedding model) are loaded once."""

    def __init__(self, cfg: ExtractConfig) -> None:
        import cv2

        self.cv2, self.cfg = cv2, cfg
        path = cv2.data.haarcascades + CASCADE
        self.detector = cv2.CascadeClassifier(path)
        if self.detector.empty():
            raise RuntimeError(f"OpenCV could not load its face cascade {path}")
        cell = cfg.crop_size // 4
        self.side = 4 * cell
        self.hog = cv2.HOGDescriptor((self.side, self.side), (2 * cell, 2 * cell), (cell, cell), (cell, cell), 9)
        self.model: Optional[Any] = None
        self.embed_dim = 0
        if cfg.vision_features == "embedding":
            self.model, self.embed_dim = load_image_model(str(cfg.vision_model), self.side)

    @property
    def dim(self) -> int:
        return len(GEOMETRY) + (self.embed_dim if self.model is not None else HOG_DIM)

    def detect(self, rgb: np.ndarray) -> Optional[tuple[int, int, int, int]]:
        """The largest face ``(x, y, w, h)`` in full-frame pixels, or None."""
        cv2 = self.cv2
        h, w = rgb.shape[:2]
        scale = min(1.0, self.cfg.detect_width / float(w))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(gray, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA) \
            if scale < 1.0 else gray
        side = max(12, int(self.cfg.min_face * min(small.shape[:2])))
        found = self.detector.detectMultiScale(cv2.equalizeHist(small), scaleFactor=self.cfg.detect_scale,
                                               minNeighbors=5, minSize=(side, side))
        if len(found) == 0:
            return None
        x, y, bw, bh = max((tuple(int(v) for v in b) for b in found), key=lambda b: b[2] * b[3])
        return int(x / scale), int(y / scale), int(bw / scale), int(bh / scale)

    def crop(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        x, y, bw, bh = box
        patch = rgb[max(0, y): y + bh, max(0, x): x + bw]
        return self.cv2.resize(patch, (self.side, self.side), interpolation=self.cv2.INTER_AREA)

    def describe(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(n, D_descriptor)`` for RGB face crops."""
        if self.model is None:
            gray = [self.cv2.cvtColor(c, self.cv2.COLOR_RGB2GRAY) for c in crops]
            return np.stack([self.hog.compute(g).reshape(-1) for g in gray]).astype(np.float32)
        import torch

        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            return self.model(batch).reshape(len(crops), -1).float().numpy()

    def __call__(self, frames: Optional[Iterable[tuple[float, np.ndarray]]]
                 ) -> tuple[Optional[np.ndarray], str, dict]:
        """``(features (T_faces, D) or None, reason, info)``; ``info`` holds per sampled frame ``times`` and ``face``
        flags."""
        times: list[float] = []
        face: list[bool] = []
        geometry: list[list[float]] = []
        crops: list[np.ndarray] = []
        if frames is None:
            return None, "", {"times": np.zeros(0, np.float32), "face": np.zeros(0, bool)}
        for t, rgb in frames:
            box = self.detect(rgb)
            times.append(t)
            face.append(box is not None)
            if box is not None:
                h, w = rgb.shape[:2]
                x, y, bw, bh = box
                geometry.append([(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h])
                crops.append(self.crop(rgb, box))
        info = {"times": np.asarray(times, np.float32), "face": np.asarray(face, bool)}
        if not times:
            return None, "no video frames decoded", info
        if not crops:
            return None, f"no face in {len(times)} sampled frames", info
        feats = np.concatenate([np.asarray(geometry, np.float32), self.describe(crops)], axis=1)
        return feats, "", info


def load_image_model(path: str, side: int) -> tuple[Any, int]:
    """A TorchScript image encoder and its output size (one dry run on a blank crop); one-line errors."""
    import torch

    from ..errors import ConfigError

    try:
        model = torch.jit.load(path, map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"vision_model {path}: not a loadable TorchScript file ({type(exc).__name__})") from exc
    with torch.inference_mode():
        try:
            out = model(torch.zeros(1, 3, side, side))
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"vision_model {path}: failed on a (1, 3, {side}, {side}) image batch "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from exc
    if not isinstance(out, torch.Tensor) or out.shape[0] != 1:
        raise ConfigError(f"vision_model {path}: expected a (1, D) tensor for one image, got "
                          f"{getattr(out, 'shape', type(out).__name__)}")
    return model, int(out.reshape(1, -1).shape[1])
