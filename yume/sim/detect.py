"""Which event do frames show? Colour and texture statistics, classified by the nearest class centroid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = "none"
FEATURES = ("luma", "contrast", "red", "warm_light", "ground_minus_sky", "edges", "saturation", "blue_shift", "white")


def frame_features(frames: np.ndarray) -> np.ndarray:
    """Mean over frames [N, H, W, 3] uint8 of the statistics named in FEATURES -> [len(FEATURES)]."""
    x = frames.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    h = x.shape[1]
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    return np.array([
        luma.mean(),
        luma.std(axis=(1, 2)).mean(),
        ((r > 0.45) & (g < 0.22) & (b < 0.22)).mean(),  # the balloon's red
        ((r > 0.7) & (g > 0.55) & (b < 0.5) & (r - b > 0.3)).mean(),  # lamp light
        luma[:, h // 2 :].mean() - luma[:, : h // 2].mean(),
        np.abs(np.diff(luma, axis=2)).mean(),  # rain streaks raise it, fog lowers it
        ((hi - lo) / np.maximum(hi, 1e-3)).mean(),
        (b - r).mean(),
        (lo > 0.8).mean(),  # snow
    ], np.float64)  # fmt: skip


@dataclass
class EventDetector:
    """Nearest-centroid classifier over standardised `frame_features`; labels are event names or "none"."""

    labels: list[str]
    centroids: np.ndarray  # [K, F], standardised
    mean: np.ndarray  # [F]
    scale: np.ndarray  # [F]

    @classmethod
    def fit(cls, examples: dict[str, list[np.ndarray]]) -> EventDetector:
        """examples: label -> list of frame stacks [N, H, W, 3] uint8 showing it (at full strength)."""
        if len(examples) < 2 or any(not v for v in examples.values()):
            raise ValueError(f"need examples of at least two labels, each non-empty; got {sorted(examples)}")
        labels = sorted(examples)
        feats = {k: np.stack([frame_features(f) for f in examples[k]]) for k in labels}
        everything = np.concatenate(list(feats.values()))
        mean, scale = everything.mean(0), everything.std(0) + 1e-6
        centroids = np.stack([((feats[k] - mean) / scale).mean(0) for k in labels])
        return cls(labels, centroids, mean, scale)

    def predict(self, frames: np.ndarray) -> str:
        """The label whose centroid is nearest to these frames' features."""
        z = (frame_features(frames) - self.mean) / self.scale
        return self.labels[int(np.argmin(((self.centroids - z) ** 2).sum(1)))]
