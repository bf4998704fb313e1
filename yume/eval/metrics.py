"""The five VBench-style video metrics: the VBench models from local weights where given, labelled proxies otherwise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yume.eval.motion import require_cv2

METRICS = ("subject_consistency", "background_consistency", "motion_smoothness", "aesthetic_quality",
           "imaging_quality")  # fmt: skip


@dataclass(frozen=True)
class ModelPaths:
    """Local folders (transformers `save_pretrained` layout) of the VBench models; None = use the weight-free proxy.

    Motion smoothness (AMT-S) and imaging quality (MUSIQ) have no transformers port, so they are always proxies.
    """

    dino: str | None = None  # facebook/dino-vitb16 (ViTModel): subject consistency
    clip_b32: str | None = None  # openai/clip-vit-base-patch32 (CLIPModel): background consistency
    clip_l14: str | None = None  # openai/clip-vit-large-patch14 (CLIPModel): aesthetic quality, with ...
    aesthetic_head: str | None = None  # ... the LAION linear head (sa_0_4_vit_l_14_linear.pth: weight [1, 768])

    def __post_init__(self):
        for name in ("dino", "clip_b32", "clip_l14", "aesthetic_head"):
            path = getattr(self, name)
            if path is not None and not Path(path).exists():
                raise FileNotFoundError(f"{name} weights not found at {path}; fix the path or leave it unset")
        if (self.clip_l14 is None) != (self.aesthetic_head is None):
            raise ValueError("aesthetic quality needs both clip_l14 and aesthetic_head (or neither for the proxy)")


def _consistency(feats: np.ndarray) -> float:
    """VBench's consistency: mean over frames t >= 1 of (cos(f_t, f_0)^+ + cos(f_t, f_{t-1})^+) / 2."""
    f = feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12)
    if len(f) < 2:
        return 1.0
    first = np.clip(f[1:] @ f[0], 0.0, None)
    prev = np.clip(np.einsum("ti,ti->t", f[1:], f[:-1]), 0.0, None)
    return float(np.mean((first + prev) / 2))


def _lab_hist(frames: np.ndarray, bins: int = 8) -> np.ndarray:
    """Joint Lab colour histograms [T, bins^3], square-rooted so cosine similarity is the Bhattacharyya coefficient."""
    cv2 = require_cv2()
    out = []
    for f in frames:
        lab = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2LAB)
        h = cv2.calcHist([lab], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
        out.append(np.sqrt(h / h.sum()))
    return np.stack(out)


def _centre(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    return frames[:, h // 4 : h - h // 4, w // 4 : w - w // 4]


def subject_consistency_proxy(frames: np.ndarray) -> float:
    """Proxy: VBench's consistency formula on colour histograms of the central quarter (where a subject usually is)."""
    return _consistency(_lab_hist(_centre(frames)))


def background_consistency_proxy(frames: np.ndarray) -> float:
    """Proxy: VBench's consistency formula on whole-frame colour histograms."""
    return _consistency(_lab_hist(frames))


def motion_smoothness_proxy(frames: np.ndarray) -> float:
    """Proxy for VBench's AMT test: predict each odd frame from its neighbours by flow warping; (255 - MAE) / 255."""
    cv2 = require_cv2()
    if len(frames) < 3:
        return 1.0
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    h, w = gray[0].shape
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float32)  # [H, W, 2] (x, y)
    errors = []
    for t in range(1, len(frames) - 1, 2):
        flow = cv2.calcOpticalFlowFarneback(gray[t - 1], gray[t + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)  # [H, W, 2]
        # The middle frame sees, at x, what frame t-1 showed at x - flow/2 and frame t+1 at x + flow/2.
        before = cv2.remap(frames[t - 1], grid - flow / 2, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        after = cv2.remap(frames[t + 1], grid + flow / 2, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        middle = (before.astype(np.float32) + after.astype(np.float32)) / 2
        errors.append(np.abs(middle - frames[t].astype(np.float32)).mean())
    return float((255.0 - np.mean(errors)) / 255.0)


def aesthetic_quality_proxy(frames: np.ndarray) -> float:
    """Proxy in [0, 1]: mean of colourfulness (Hasler-Suesstrunk, /100), RMS contrast (x4) and exposure balance."""
    scores = []
    for f in frames.astype(np.float32):
        r, g, b = f[..., 0], f[..., 1], f[..., 2]
        rg, yb = r - g, 0.5 * (r + g) - b
        colourful = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
        luma = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
        exposure = 1.0 - 2.0 * abs(float(luma.mean()) - 0.5)
        scores.append((min(colourful / 100.0, 1.0) + min(4.0 * float(luma.std()), 1.0) + exposure) / 3)
    return float(np.mean(scores))


def imaging_quality_proxy(frames: np.ndarray) -> float:
    """Proxy in [0, 1]: sharpness (Laplacian energy relative to noise, Immerkaer's estimate) squashed by x/(x+1)."""
    cv2 = require_cv2()
    noise_kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    scores = []
    for f in frames:
        g = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY).astype(np.float32)
        sharp = float(cv2.Laplacian(g, cv2.CV_32F, ksize=3).std())
        noise = float(np.abs(cv2.filter2D(g, -1, noise_kernel)).mean()) * np.sqrt(np.pi / 2) / 6
        ratio = sharp / (8.0 * noise + 1.0)
        scores.append(ratio / (ratio + 1.0))
    return float(np.mean(scores))


def _image_features(frames: np.ndarray, path: str, kind: str) -> np.ndarray:
    """Per-frame embeddings [T, D] from a local transformers folder: "dino" (ViT CLS) or "clip" (image embeds)."""
    import torch
    import torch.nn.functional as F
    from transformers import CLIPModel, ViTModel

    cfg_file = Path(path) / "preprocessor_config.json"
    pre = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
    clip_defaults = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
    mean, std = (pre.get("image_mean"), pre.get("image_std")) if "image_mean" in pre else (
        clip_defaults if kind == "clip" else ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    model = (CLIPModel if kind == "clip" else ViTModel).from_pretrained(path).eval()
    size = model.config.vision_config.image_size if kind == "clip" else model.config.image_size
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                      antialias=True, align_corners=False)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        if kind == "clip":
            out = model.get_image_features(pixel_values=x)
            feats = out if isinstance(out, torch.Tensor) else out.pooler_output
        else:
            feats = model(pixel_values=x).last_hidden_state[:, 0]
    return feats.float().numpy()


def aesthetic_quality_laion(frames: np.ndarray, clip_l14: str, head: str) -> float:
    """VBench's aesthetic score: LAION linear head on normalised CLIP ViT-L/14 embeddings, / 10, mean over frames."""
    import torch

    state = torch.load(head, map_location="cpu", weights_only=True)
    weight, bias = state["weight"].float().numpy(), state["bias"].float().numpy()  # [1, D], [1]
    feats = _image_features(frames, clip_l14, "clip")
    if feats.shape[1] != weight.shape[1]:
        raise ValueError(f"aesthetic head {head} expects {weight.shape[1]}-d CLIP embeddings, {clip_l14} gives "
                         f"{feats.shape[1]}; use the ViT-L/14 model the head was trained on")
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    return float(np.mean(feats @ weight.T + bias) / 10.0)


def quality_metrics(frames: np.ndarray, models: ModelPaths | None = None) -> dict[str, dict]:
    """The five metrics of frames [T, H, W, 3] uint8: {name: {"score": float, "method": str}}."""
    models = models or ModelPaths()
    out = {}
    if models.dino:
        out["subject_consistency"] = (_consistency(_image_features(frames, models.dino, "dino")), "vbench:dino")
    else:
        out["subject_consistency"] = (subject_consistency_proxy(frames), "proxy:centre-colour-histogram")
    if models.clip_b32:
        out["background_consistency"] = (_consistency(_image_features(frames, models.clip_b32, "clip")),
                                         "vbench:clip")
    else:
        out["background_consistency"] = (background_consistency_proxy(frames), "proxy:colour-histogram")
    out["motion_smoothness"] = (motion_smoothness_proxy(frames), "proxy:flow-interpolation")
    if models.clip_l14:
        out["aesthetic_quality"] = (aesthetic_quality_laion(frames, models.clip_l14, models.aesthetic_head),
                                    "vbench:clip-l14+laion")
    else:
        out["aesthetic_quality"] = (aesthetic_quality_proxy(frames), "proxy:colour-contrast-exposure")
    out["imaging_quality"] = (imaging_quality_proxy(frames), "proxy:sharpness-over-noise")
    return {k: {"score": v[0], "method": v[1]} for k, v in out.items()}
