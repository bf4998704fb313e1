"""Which event has appeared in a video? How its colour and texture statistics change, by the nearest class centroid."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def change_features(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """How the statistics of `after` [N, H, W, 3] differ from those of `before` (earlier frames of the same walk).

    An event is a change: comparing a video with itself cancels what is constant in it — the world's colours, a
    VAE's blur and washed-out palette — which a detector of absolute statistics mistakes for an event.
    """
    return frame_features(after) - frame_features(before)


@dataclass
class EventDetector:
    """Nearest-centroid classifier over standardised `change_features`; labels are event names or "none"."""

    labels: list[str]
    centroids: np.ndarray  # [K, F], standardised
    mean: np.ndarray  # [F]
    scale: np.ndarray  # [F]; inf for a feature that is ignored
    hidden: dict[str, float] = field(default_factory=dict)  # label -> leave-one-out recall, for labels left out

    @classmethod
    def fit(cls, examples: dict[str, list[tuple[np.ndarray, np.ndarray]]], min_recall: float = 0.5) -> EventDetector:
        """examples: label -> (before, after) frame stacks [N, H, W, 3] uint8 of one walk, `after` showing it.

        Features are standardised over all examples; one that never varies in them (a colour that the examples'
        domain, e.g. a VAE's round trip, cannot show) gets no weight, rather than an infinite one for whatever a new
        video does with it. An event whose own examples are recognised (leave-one-out) less often than `min_recall`
        cannot be seen in this domain: it is left out of the labels (into `hidden`), so that the detector neither
        credits it by chance nor reads it into videos where nothing happens.
        """
        if len(examples) < 2 or any(not v for v in examples.values()):
            raise ValueError(f"need examples of at least two labels, each non-empty; got {sorted(examples)}")
        labels = sorted(examples)
        feats = {k: np.stack([change_features(b, a) for b, a in examples[k]]) for k in labels}
        everything = np.concatenate(list(feats.values()))
        mean, spread = everything.mean(0), everything.std(0)
        scale = np.where(spread > 1e-6, spread, np.inf)
        z = {k: (feats[k] - mean) / scale for k in labels}
        recall = _leave_one_out_recall(z)
        hidden = {k: r for k, r in recall.items() if k != NONE and r < min_recall}
        kept = [k for k in labels if k not in hidden]
        if len(kept) < 2:
            raise ValueError(f"no event can be told from {NONE!r} in these examples (recall {recall})")
        return cls(kept, np.stack([z[k].mean(0) for k in kept]), mean, scale, hidden)

    def predict(self, before: np.ndarray, after: np.ndarray) -> str:
        """The label whose centroid is nearest to how `after` differs from `before`."""
        z = (change_features(before, after) - self.mean) / self.scale
        return self.labels[int(np.argmin(((self.centroids - z) ** 2).sum(1)))]


def _leave_one_out_recall(z: dict[str, np.ndarray]) -> dict[str, float]:
    """Per label: the share of its examples [N, F] the nearest centroid gives back to it when each example is left
    out of its own centroid (1.0 for a label with a single example, which cannot be checked)."""
    means = {k: v.mean(0) for k, v in z.items()}
    recall = {}
    for k, v in z.items():
        if len(v) < 2:
            recall[k] = 1.0
            continue
        hits = 0
        for i in range(len(v)):
            own = (v.sum(0) - v[i]) / (len(v) - 1)
            dist = {j: ((own if j == k else m) - v[i]) @ ((own if j == k else m) - v[i]) for j, m in means.items()}
            hits += min(dist, key=dist.get) == k
        recall[k] = hits / len(v)
    return recall
