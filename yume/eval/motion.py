"""Weight-free camera-motion estimation from frames, quantised into the keyboard vocabulary (the IF metric)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from yume.sim.camera import intrinsics


def require_cv2():
    """The cv2 module, or an ImportError that says which package to install."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError("yume eval needs OpenCV: pip install opencv-python-headless") from e
    return cv2


@dataclass(frozen=True)
class MotionConfig:
    """Estimator settings; thresholds are per frame so they hold for any chunk length."""

    fov_deg: float = 70.0  # assumed horizontal field of view of the video
    work_width: int = 256  # frames wider than this are downscaled first (pixels below are at this width)
    pair_gap: int = 5  # frames tracked (through every frame between) per motion estimate
    pair_stride: int = 2  # frames between the starts of successive pairs (< pair_gap: overlapping pairs)
    max_corners: int = 400
    fb_max_px: float = 0.7  # forward-backward tracking error above which a track is dropped
    jitter_px: float = 0.05  # RMS departure of a track from a quadratic in time: rougher tracks are dropped
    # ... or rougher than the median track of their band of rows (3: thirds), where that band is noisier: a generator's
    # fast near ground shimmers more than its far field, and one median for the whole frame dropped all of it
    # (docs/eval.md, "Shimmer"; 1 band is the estimator before session 30).
    jitter_bands: int = 3
    rotate_deg_per_frame: float = 0.45  # |yaw| or |pitch| rate above which the chunk counts as turning
    parallax_percentile: float = 80.0  # which rotation-only residual measures a pair's parallax
    parallax_px_per_frame: float = 0.125  # that residual's rate above which the camera counts as moving
    noise_px: float = 0.5  # scale of the robust (Cauchy, then Geman-McClure) loss on epipolar residuals
    # Weather and light changes break tracking (docs/eval.md, "Weather and light"): a grey-level opening (erosion, then
    # dilation) with a disc this wide removes what is bright and thinner than it, rain streaks and snowflakes,
    # which move with the weather, not the camera, before corners are picked; 0 or 1 turns it off.
    opening_px: int = 3
    # Each frame divided by its local contrast (Gaussian mean and RMS over this sigma, in pixels at work_width):
    # night, fog and street lights ramp the brightness and contrast during a chunk, against Lucas-Kanade's constant
    # brightness and the corner detector's global threshold (which fog leaves only near corners to pass). 0: off.
    contrast_sigma_px: float = 12.0

    def __post_init__(self):
        if self.jitter_bands < 1:
            raise ValueError(f"jitter_bands={self.jitter_bands} must be >= 1")
        if self.pair_gap < 1 or self.pair_stride < 1:
            raise ValueError(f"pair_gap={self.pair_gap} and pair_stride={self.pair_stride} must be >= 1")
        if not 0.0 <= self.parallax_percentile <= 100.0:
            raise ValueError(f"parallax_percentile={self.parallax_percentile} must be between 0 and 100")
        if self.opening_px < 0 or self.contrast_sigma_px < 0:
            raise ValueError(f"opening_px={self.opening_px} and contrast_sigma_px={self.contrast_sigma_px} must be >= 0")
        if not 1.0 < self.fov_deg < 179.0:
            raise ValueError(f"fov_deg={self.fov_deg} must be between 1 and 179 degrees")


@dataclass(frozen=True)
class ChunkMotion:
    """What the estimator saw in one chunk, per frame, and its reading in the vocabulary."""

    yaw: float  # degrees per frame, > 0 turning right
    pitch: float  # degrees per frame, > 0 looking up
    right: float  # translation direction in the camera's horizontal plane (unit length when moving)
    forward: float
    parallax: float  # rotation-only residual, pixels per frame at work_width: how much the camera translated
    pairs: int  # frame pairs that gave an estimate
    move: str
    rotate: str


def _gray(frames: np.ndarray, cfg: MotionConfig) -> list[np.ndarray]:
    """uint8 grey frames at most cfg.work_width wide, opened and contrast-normalised as cfg says."""
    cv2 = require_cv2()
    h, w = frames.shape[1:3]
    scale = min(1.0, cfg.work_width / w)
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.opening_px, cfg.opening_px)) if cfg.opening_px > 1 else None
    out = []
    for f in frames:
        g = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY)
        g = g if scale == 1.0 else cv2.resize(g, size, interpolation=cv2.INTER_AREA)
        if disc is not None:
            g = cv2.morphologyEx(g, cv2.MORPH_OPEN, disc)
        if cfg.contrast_sigma_px > 0:
            g = normalise_contrast(g, cfg.contrast_sigma_px)
        out.append(g)
    return out


def normalise_contrast(gray: np.ndarray, sigma: float, floor: float = 2.0) -> np.ndarray:
    """uint8 [H, W] -> uint8: (g - local mean) / local RMS contrast (Gaussian windows of `sigma` px), mapped to
    128 ± 40 per unit. `floor` (grey levels) keeps flat regions from turning their noise into texture."""
    cv2 = require_cv2()
    g = gray.astype(np.float32)
    d = g - cv2.GaussianBlur(g, (0, 0), sigma)
    rms = np.sqrt(cv2.GaussianBlur(d * d, (0, 0), sigma)) + floor
    return np.clip(d / rms * 40.0 + 128.0, 0, 255).astype(np.uint8)


def _track(gray: list[np.ndarray], cfg: MotionConfig):
    """Corners of gray[0] followed through every frame to gray[-1]: (p0 [N, 2], p1 [N, 2]) of surviving tracks.

    A held action moves the camera smoothly, so a true track is close to a quadratic in time; tracks that jump
    (aliased thin or distant structures, slips along edges) are dropped: those rougher than cfg.jitter_px, or than
    the median track of their band of rows (cfg.jitter_bands equal bands by where the track starts) where that band
    is noisier than that.
    """
    cv2 = require_cv2()
    h, w = gray[0].shape
    p0 = cv2.goodFeaturesToTrack(gray[0], cfg.max_corners, 0.005, max(3.0, w / 60), blockSize=5)
    if p0 is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    p = p0.astype(np.float32)
    alive = np.ones(len(p), bool)
    lk = dict(winSize=(15, 15), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    path = [p.reshape(-1, 2)]
    for a, b in zip(gray[:-1], gray[1:]):
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(a, b, p, None, **lk)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, nxt, None, **lk)
        fb = np.linalg.norm((back - p).reshape(-1, 2), axis=1)
        alive &= (st.ravel() == 1) & (st2.ravel() == 1) & (fb < cfg.fb_max_px)
        p = nxt
        path.append(p.reshape(-1, 2))
    q = p.reshape(-1, 2)
    inside = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
    alive &= inside
    if len(path) > 3 and alive.any():
        jitter = track_jitter(np.stack(path).astype(np.float64))
        band = np.minimum((path[0][:, 1] * cfg.jitter_bands / h).astype(int), cfg.jitter_bands - 1)
        bound = np.full(len(jitter), cfg.jitter_px)
        for k in range(cfg.jitter_bands):
            if (alive & (band == k)).any():
                bound[band == k] = max(cfg.jitter_px, float(np.median(jitter[alive & (band == k)])))
        alive &= jitter <= bound
    return p0.reshape(-1, 2)[alive].astype(np.float64), q[alive].astype(np.float64)


def track_jitter(path: np.ndarray) -> np.ndarray:
    """RMS distance [N] of each track in path [T, N, 2] (T >= 4) from its least-squares quadratic in time."""
    t = np.vander(np.arange(len(path), dtype=np.float64), 3)  # [T, 3]
    flat = path.reshape(len(path), -1)
    resid = flat - t @ np.linalg.lstsq(t, flat, rcond=None)[0]
    return np.sqrt((resid.reshape(path.shape) ** 2).sum(-1).mean(0))


def fit_rotation(b1: np.ndarray, b2: np.ndarray, iters: int = 6):
    """Robust rotation R with b2 ~ R b1 for unit bearings [N, 3] (weighted Kabsch, Cauchy reweighting).

    Returns (R [3, 3], residual angles [N] in radians).
    """
    w = np.ones(len(b1))
    for _ in range(iters):
        u, _, vt = np.linalg.svd((b2 * w[:, None]).T @ b1)
        r = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
        res = np.linalg.norm(b2 - b1 @ r.T, axis=1)
        scale = 2.0 * np.median(res) + 1e-9
        w = 1.0 / (1.0 + (res / scale) ** 2)
    return r, res


def _yaw_pitch(r_rel: np.ndarray) -> tuple[float, float]:
    """Yaw (right +) and pitch (up +) in degrees of the camera rotation r_rel (camera-1 axes)."""
    fwd = r_rel[:, 2]
    return math.degrees(math.atan2(fwd[0], fwd[2])), math.degrees(math.asin(float(np.clip(-fwd[1], -1, 1))))


def _bearings(p: np.ndarray, k_inv: np.ndarray) -> np.ndarray:
    b = np.c_[p, np.ones(len(p))] @ k_inv.T
    return b / np.linalg.norm(b, axis=1, keepdims=True)


AZIMUTHS = np.radians(np.arange(0.0, 180.0, 4.0))  # t and -t fit the epipolar constraint equally: half a circle
ELEVATIONS = np.radians(np.arange(-40.0, 40.1, 10.0))  # a pitched camera sees level motion tilted in its own axes
DIRECTIONS = np.stack(
    [np.sin(AZIMUTHS)[:, None] * np.cos(ELEVATIONS), np.ones((len(AZIMUTHS), 1)) * np.sin(ELEVATIONS),
     np.cos(AZIMUTHS)[:, None] * np.cos(ELEVATIONS)], axis=-1)  # [A, E, 3] unit directions in camera axes  # fmt: skip


def epipolar_fit(b0: np.ndarray, b1: np.ndarray, dirs: np.ndarray, scale: float, iters: int = 3, redescend: int = 2):
    """For each candidate translation direction [D, 3]: the small rotation w [D, 3] and robust cost [D].

    The epipolar constraint (b0 + w x b0) . (b1 x t) = 0 is linear in w for a fixed t, so every direction gets its
    own robust least-squares rotation: `iters` Cauchy reweightings (`scale` radians), then `redescend` Geman-McClure
    ones, whose bounded cost keeps a few bad tracks from pulling the direction towards one that explains them.
    Searching directions explicitly keeps sideways motion from being traded for a turn.
    """
    n = np.cross(b1[None], dirs[:, None])  # [D, N, 3]
    a = np.cross(b0[None], n)  # [D, N, 3]: w . a = -b0 . n
    c = -(b0[None] * n).sum(-1)  # [D, N]
    norm = np.linalg.norm(n, axis=-1) + 1e-9
    w = np.ones(c.shape)
    for i in range(iters + redescend):
        aw = a * (w / norm**2)[..., None]
        lhs = np.einsum("dni,dnj->dij", aw, a) + 1e-9 * np.eye(3)
        omega = np.linalg.solve(lhs, np.einsum("dni,dn->di", aw, c)[..., None])[..., 0]
        r2 = ((np.einsum("dni,di->dn", a, omega) - c) / norm / scale) ** 2
        w = 1.0 / (1.0 + r2) ** (2 if i + 1 >= iters else 1)
    return omega, (r2 / (1.0 + r2)).sum(-1)


def _rodrigues(w: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3)
    k = w / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


@dataclass
class _Pair:
    b0: np.ndarray  # [N, 3] unit bearings in view 1
    b1: np.ndarray  # [N, 3] the same points in view 2
    r_cv: np.ndarray  # [3, 3] b1 ~ r_cv b0: maps camera-1 coordinates into camera 2
    residual: float  # rotation-only residual (parallax_percentile), pixels


def _camera_step(pair: _Pair, dirs: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Refined rotation r_cv, the camera's translation direction up to sign (camera-1 axes, t searched among
    dirs [D, 3]), and the depth-sign vote for that direction (> 0: as returned, < 0: the opposite way)."""
    r_cv = pair.r_cv
    for _ in range(2):  # linearise around the rotation-only fit, then once more around the refined rotation
        omega, cost = epipolar_fit(pair.b0 @ r_cv.T, pair.b1, dirs, scale)
        best = int(np.argmin(cost))
        r_cv = _rodrigues(omega[best]) @ r_cv
    t = dirs[best]
    # Depths along both rays with X2 = r_cv X1 + t: lam1 b1 - lam0 (r_cv b0) = t; mostly negative -> t points back.
    d0 = pair.b0 @ r_cv.T
    bd = np.einsum("ni,ni->n", pair.b1, d0)
    m = np.stack([np.ones_like(bd), -bd, -bd, np.ones_like(bd)], -1).reshape(-1, 2, 2)
    rhs = np.stack([pair.b1 @ t, -(d0 @ t)], -1)[..., None]
    lam = np.linalg.solve(m + 1e-9 * np.eye(2), rhs)[..., 0]  # [N, 2]
    return r_cv, -(r_cv.T @ t), float(np.sign(lam).mean())  # view 2's camera centre in camera-1 axes is -r_cv^T t


def quantise_rotation(yaw: float, pitch: float, threshold: float) -> str:
    """Arrow string for per-frame yaw/pitch rates (degrees): e.g. (1.2, -0.9) -> "↓→"."""
    vertical = "↑" if pitch > threshold else "↓" if pitch < -threshold else ""
    horizontal = "→" if yaw > threshold else "←" if yaw < -threshold else ""
    return vertical + horizontal  # one of yume.actions.ROTATIONS


def quantise_move(right: float, forward: float) -> str:
    """Key string for a horizontal translation direction: the nearest of the eight 45-degree sectors."""
    angle = math.degrees(math.atan2(right, forward)) % 360.0  # 0 forward, 90 right
    sector = int(((angle + 22.5) % 360.0) // 45.0)
    return ["W", "W+D", "D", "S+D", "S", "S+A", "A", "W+A"][sector]  # yume.actions.MOVES, clockwise from W


def estimate_chunk(frames: np.ndarray, cfg: MotionConfig | None = None) -> ChunkMotion:
    """Estimate the camera motion of one chunk from its frames [T, H, W, 3] uint8 (T >= 2)."""
    cfg = cfg or MotionConfig()
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise ValueError(f"expected frames [T>=2, H, W, 3], got shape {tuple(frames.shape)}")
    gray = _gray(frames, cfg)
    k = intrinsics(*gray[0].shape, cfg.fov_deg)
    k_inv = np.linalg.inv(k)
    gap = min(cfg.pair_gap, len(gray) - 1)
    last = len(gray) - 1 - gap
    pairs = []
    for start in sorted(set(range(0, last + 1, cfg.pair_stride)) | {last}):  # full-length; the last ends the chunk
        p0, p1 = _track(gray[start : start + gap + 1], cfg)
        if len(p0) >= 8:
            b0, b1 = _bearings(p0, k_inv), _bearings(p1, k_inv)
            r_cv, res = fit_rotation(b0, b1)
            pairs.append(_Pair(b0, b1, r_cv, float(np.percentile(res, cfg.parallax_percentile)) * k[0, 0]))
    if not pairs:
        return ChunkMotion(0.0, 0.0, 0.0, 0.0, 0.0, 0, "", "")
    parallax = float(np.median([p.residual for p in pairs])) / gap
    moving = [p for p in pairs if p.residual > cfg.parallax_px_per_frame * gap]
    direction = np.zeros(3)
    if 2 * len(moving) > len(pairs):
        # One translation azimuth for the whole chunk (keys are held, so it is fixed in camera axes): sum the pairs'
        # costs, each minimised over elevation since pitching changes how level motion looks in camera axes.
        scale = cfg.noise_px / k[0, 0]
        total = np.zeros(len(AZIMUTHS))
        for p in moving:
            _, cost = epipolar_fit(p.b0 @ p.r_cv.T, p.b1, DIRECTIONS.reshape(-1, 3), scale)
            total += cost.reshape(DIRECTIONS.shape[:2]).min(axis=1)
        azimuth = int(np.argmin(total))
        votes = 0.0
        for p in moving:
            p.r_cv, move, vote = _camera_step(p, DIRECTIONS[azimuth], scale)
            direction += move * p.residual  # pairs with more parallax see the direction better
            votes += vote * p.residual
        direction *= 1.0 if votes >= 0 else -1.0  # forward or back: one decision from all pairs' depths
    yaw_pitch = np.array([_yaw_pitch(p.r_cv.T) for p in pairs])
    yaw, pitch = (float(v) for v in yaw_pitch.mean(axis=0) / gap)  # pairs overlap: mean rate, not a sum
    rotate = quantise_rotation(yaw, pitch, cfg.rotate_deg_per_frame)
    if math.hypot(direction[0], direction[2]) < 1e-9:
        return ChunkMotion(yaw, pitch, 0.0, 0.0, parallax, len(pairs), "", rotate)
    horiz = np.array([direction[0], direction[2]]) / math.hypot(direction[0], direction[2])
    move = quantise_move(horiz[0], horiz[1])
    return ChunkMotion(yaw, pitch, float(horiz[0]), float(horiz[1]), parallax, len(pairs), move, rotate)
