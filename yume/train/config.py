"""The typed config of one training run: sections of dataclasses, read from TOML or YAML, `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("flow", "self-forcing", "ode")
PARALLEL = ("auto", "fsdp", "ddp", "none")
AUTOCAST = ("bf16", "none")


@dataclass
class ModelSection:
    preset: str = "tiny"  # ModelConfig preset for a random init when `weights` is empty
    weights: str = ""  # a DiT file or folder (original or diffusers layout) to start from
    history_policy: str = "release"
    init_seed: int = 0


@dataclass
class DataSection:
    cache: str = ""  # a latent cache folder made by `yume data cache`
    batch_size: int = 1
    chunk_latents: int = 8  # latent frames denoised per step (8 = 29 frames in the release)
    history_min: int = 2  # latent frames of history prefix in v2v steps
    history_max: int = 250
    # v2v history lengths drawn from history_min, history_min + stride, ...: with data whose action changes every
    # `stride` frames after the first, stride = chunk_latents puts every chunk on one action, as inference's are.
    history_stride: int = 1
    mix: tuple[float, float, float] = (0.3, 0.3, 0.4)  # t2v, i2v, v2v
    decomposed_prob: float = 0.6  # the paper's probability of encoding action and scene separately
    first_frame_noise: float = 0.0  # max σ of the noise added to history latent 0
    text_dropout: float = 0.0  # probability of the empty caption instead (needed for classifier-free guidance)


@dataclass
class OptimSection:
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int = 0
    grad_clip: float = 1.0
    eight_bit: bool = False  # bitsandbytes AdamW8bit; needs bitsandbytes installed


@dataclass
class FlowSection:
    shift: float = 7.0  # σ' = sσ / (1 + (s − 1)σ) after logit-normal sampling; 7 for the 5B model
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # > 0: plus motion_weight x the MSE of the frame-to-frame changes of the clean chunk the velocity implies against
    # the true chunk's (yume.train.flow.motion_loss): the camera's motion charged apart from the content.
    motion_weight: float = 0.0


@dataclass
class SelfForcingSection:
    teacher: str = ""  # the frozen real score; "" = the generator's initial weights
    chunks: int = 3  # K chunks rolled out per step
    steps: int = 4  # denoising steps: σ = linspace(1, 0, steps + 1)[:-1] shifted, t = [1000, 750, 500, 250] for 4
    shift: float = 7.0
    guidance: float = 1.0  # CFG scale of the real score (1 = none)
    critic_ratio: int = 5  # critic updates per generator update
    # > 0: each step first rolls out U{0..prefix_chunks} chunks without gradient through the whole few-step sampler
    # (as inference does) on the generator's own history, and trains the K chunks after them, so DMD also sees
    # chunks deep into a long world, where a short-rollout student drifts (Self-Forcing++, Cui et al. 2025).
    prefix_chunks: int = 0
    critic_lr: float = 0.0  # 0 = optim.lr
    sigma_min: float = 0.02  # DMD noise levels are drawn uniformly from [sigma_min, sigma_max]
    sigma_max: float = 0.98
    # > 0: roll out the clip's own actions after its true history and add real_weight x the MSE between each
    # generated chunk and what the camera really saw there, both average-pooled real_pool x real_pool in space. DMD
    # alone can at best match its teacher; this term pulls the student's motion towards the data itself (DMD2 adds
    # real data, as a GAN loss, for the same reason). The pooling keeps it to where things are, not their detail,
    # which a frame-exact regression would blur. Needs prefix_chunks = 0.
    real_weight: float = 0.0
    real_pool: int = 2
    # > 0: the same rollout, plus real_motion_weight x the MSE between the frame-to-frame changes of each generated
    # chunk and of the true one (pooled alike): the camera's motion, without the content a rollout makes up.
    real_motion_weight: float = 0.0
    # > 0: the same rollout, plus real_motion_map_weight x the MSE between the log of how much each 4 x 4 region of
    # the view changes in the generated and the true chunk (yume.train.self_forcing.motion_map_loss): a sideways step
    # leaves the far view still where a turn moves it, whatever content the rollout made up there.
    real_motion_map_weight: float = 0.0

    @property
    def real_data(self) -> bool:
        """Whether steps roll out the clip's own actions and score them against its true continuation."""
        return bool(self.real_weight or self.real_motion_weight or self.real_motion_map_weight)


@dataclass
class OdeSection:
    # The folder of teacher ODE solutions (`yume train ode-pairs`) the `ode` stage regresses the few-step student on
    # (yume.train.ode). The student's schedule is self_forcing.steps/shift; the teacher and its guidance, when the
    # pairs are written, self_forcing.teacher/guidance.
    pairs: str = ""
    # "followed": only the pairs whose teacher chunk the evaluation's motion estimator reads as the keys asked (the
    # rotation, and the move where one is asked: yume.train.ode.follows; `yume train ode-verify` writes the
    # verdicts): the student learns the teacher's samples that answer the keys, not its mistakes. "all": every pair.
    keep: str = "all"
    # With keep = "followed": also drop the pairs where a step is asked and the teacher's chunk steps less than this
    # times as far as the data's own continuation of the same history (the verdicts' parallax / data_parallax). The
    # 4-step students step short of their teacher (docs/sim-model.md, session 27), which reads short of its data
    # (session 28; session 29 traced that reading to its near ground's texture wobbling, which the estimator's tracks
    # drop, more than to a short step); 0.9 there did not lengthen the student's step, since the ratio picks scenes as
    # much as steps. 0: no bound.
    min_step_ratio: float = 0.0
    # With keep = "followed": pairs whose keys ask a sideways step (A or D, alone or in a diagonal) are drawn this many
    # times as often as the others. The students lose their teacher's walk mostly there (docs/sim-model.md, session
    # 31), so this spends the regression where they lose. 1: every kept pair equally often.
    sideways_weight: float = 1.0
    # What the student's x̂₀ regresses: "teacher", the teacher's solution from the pair's noise (ODE distillation);
    # "data", the clips' own continuation of the same history (`Pair.data`): the mean of what the data does next,
    # blurred wherever the next chunk is not fixed by its history and keys (docs/sim-model.md, session 29, tried it for
    # the data's full step; the estimator's reading of the student did not change). The pairs' noise and histories
    # are used either way.
    target: str = "teacher"


@dataclass
class LoraSection:
    rank: int = 0  # 0 = full fine-tuning
    alpha: float = 0.0  # 0 = rank (scale 1)
    targets: tuple[str, ...] = ("q", "k", "v", "o", "ffn.0", "ffn.2")


@dataclass
class RunSection:
    out: str = "runs/yume"
    steps: int = 1000
    seed: int = 0
    log_every: int = 1
    save_every: int = 500
    autocast: str = "bf16"
    activation_checkpointing: bool = False
    parallel: str = "auto"  # auto: FSDP under torchrun, nothing in one process
    ema_decay: float = 0.0  # 0 = no EMA
    progress: bool = True
    resume: bool = True  # continue from the newest checkpoint in `out` if there is one
    max_minutes: float = 0.0  # > 0: save a checkpoint and stop after this wall time (a run on a lent GPU slot)
    stop_file: str = ""  # when this file appears, save a checkpoint and stop (another process ends the run)


@dataclass
class TrainConfig:
    stage: str = "flow"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    flow: FlowSection = field(default_factory=FlowSection)
    self_forcing: SelfForcingSection = field(default_factory=SelfForcingSection)
    ode: OdeSection = field(default_factory=OdeSection)
    lora: LoraSection = field(default_factory=LoraSection)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self):
        _check(self.stage in STAGES, "stage", self.stage, f"one of {STAGES}")
        d, o, r, sf = self.data, self.optim, self.run, self.self_forcing
        _check(bool(d.cache), "data.cache", d.cache, "the folder made by `yume data cache`")
        _check(d.batch_size >= 1, "data.batch_size", d.batch_size, ">= 1")
        _check(d.chunk_latents >= 1, "data.chunk_latents", d.chunk_latents, ">= 1")
        _check(1 <= d.history_min <= d.history_max, "data.history_min/max", (d.history_min, d.history_max),
               "1 <= history_min <= history_max")  # fmt: skip
        _check(d.history_stride >= 1, "data.history_stride", d.history_stride, ">= 1")
        _check(len(d.mix) == 3 and min(d.mix) >= 0 and sum(d.mix) > 0, "data.mix", d.mix,
               "three weights >= 0 (t2v, i2v, v2v), not all zero")  # fmt: skip
        _check(0 <= d.decomposed_prob <= 1, "data.decomposed_prob", d.decomposed_prob, "in [0, 1]")
        _check(0 <= d.first_frame_noise <= 1, "data.first_frame_noise", d.first_frame_noise, "in [0, 1]")
        _check(0 <= d.text_dropout < 1, "data.text_dropout", d.text_dropout, "in [0, 1)")
        _check(o.lr > 0, "optim.lr", o.lr, "> 0")
        _check(o.grad_clip >= 0, "optim.grad_clip", o.grad_clip, ">= 0 (0 = no clipping)")
        _check(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, ">= 0")
        _check(r.max_minutes >= 0, "run.max_minutes", r.max_minutes, ">= 0 (0 = no time limit)")
        _check(self.flow.shift > 0 and self.flow.logit_std > 0, "flow.shift/logit_std",
               (self.flow.shift, self.flow.logit_std), "both > 0")  # fmt: skip
        _check(self.flow.motion_weight >= 0, "flow.motion_weight", self.flow.motion_weight, ">= 0 (0 = off)")
        _check(not (self.stage == "flow" and self.flow.motion_weight and self.data.chunk_latents < 2),
               "flow.motion_weight", self.flow.motion_weight,
               "0 when data.chunk_latents < 2 (one latent a chunk has no frame-to-frame change)")  # fmt: skip
        _check(sf.chunks >= 1 and sf.steps >= 1, "self_forcing.chunks/steps", (sf.chunks, sf.steps), "both >= 1")
        _check(sf.prefix_chunks >= 0, "self_forcing.prefix_chunks", sf.prefix_chunks, ">= 0")
        _check(sf.real_weight >= 0, "self_forcing.real_weight", sf.real_weight, ">= 0 (0 = DMD alone)")
        _check(sf.real_pool >= 1, "self_forcing.real_pool", sf.real_pool, ">= 1 (1 = no pooling)")
        _check(sf.real_motion_weight >= 0, "self_forcing.real_motion_weight", sf.real_motion_weight, ">= 0 (0 = off)")
        _check(not (sf.real_motion_weight and d.chunk_latents < 2), "self_forcing.real_motion_weight",
               sf.real_motion_weight, "0 when data.chunk_latents < 2 (one latent a chunk has no frame-to-frame change)")  # fmt: skip
        _check(sf.real_motion_map_weight >= 0, "self_forcing.real_motion_map_weight", sf.real_motion_map_weight,
               ">= 0 (0 = off)")
        _check(not (sf.real_motion_map_weight and d.chunk_latents < 2), "self_forcing.real_motion_map_weight",
               sf.real_motion_map_weight, "0 when data.chunk_latents < 2 (one latent a chunk has no frame-to-frame change)")  # fmt: skip
        _check(not (sf.real_data and sf.prefix_chunks),
               "self_forcing.real_weight/real_motion_weight/real_motion_map_weight",
               (sf.real_weight, sf.real_motion_weight, sf.real_motion_map_weight),
               "all 0 when self_forcing.prefix_chunks > 0 (the clip's continuation is scored from its true history)")  # fmt: skip
        _check(sf.critic_ratio >= 1, "self_forcing.critic_ratio", sf.critic_ratio, ">= 1")
        _check(sf.guidance >= 1, "self_forcing.guidance", sf.guidance, ">= 1 (1 = no CFG)")
        _check(0 < sf.sigma_min < sf.sigma_max <= 1, "self_forcing.sigma_min/max", (sf.sigma_min, sf.sigma_max),
               "0 < sigma_min < sigma_max <= 1")  # fmt: skip
        _check(self.ode.keep in ("all", "followed"), "ode.keep", self.ode.keep, "'all' or 'followed'")
        _check(self.ode.target in ("teacher", "data"), "ode.target", self.ode.target, "'teacher' or 'data'")
        _check(self.ode.min_step_ratio >= 0, "ode.min_step_ratio", self.ode.min_step_ratio, ">= 0")
        _check(self.ode.sideways_weight > 0, "ode.sideways_weight", self.ode.sideways_weight, "> 0 (1 = no weighting)")
        _check(self.ode.sideways_weight == 1 or self.ode.keep == "followed", "ode.sideways_weight",
               self.ode.sideways_weight, "1 unless ode.keep = 'followed' (the keys are read from `yume train "
               "ode-verify`'s verdicts)")  # fmt: skip
        _check(not (self.ode.min_step_ratio and self.ode.keep != "followed"), "ode.min_step_ratio",
               self.ode.min_step_ratio, "0 unless ode.keep = 'followed' (it reads `yume train ode-verify`'s verdicts)")  # fmt: skip
        _check(not (self.stage == "ode" and not self.ode.pairs), "ode.pairs", self.ode.pairs,
               "the folder `yume train ode-pairs` wrote, for the ode stage")  # fmt: skip
        _check(self.lora.rank >= 0, "lora.rank", self.lora.rank, ">= 0")
        _check(r.steps >= 1 and r.save_every >= 1 and r.log_every >= 1, "run.steps/save_every/log_every",
               (r.steps, r.save_every, r.log_every), "all >= 1")  # fmt: skip
        _check(r.autocast in AUTOCAST, "run.autocast", r.autocast, f"one of {AUTOCAST}")
        _check(r.parallel in PARALLEL, "run.parallel", r.parallel, f"one of {PARALLEL}")
        _check(0 <= r.ema_decay < 1, "run.ema_decay", r.ema_decay, "in [0, 1) (0 = off)")
        if o.eight_bit:
            import importlib.util

            _check(importlib.util.find_spec("bitsandbytes") is not None, "optim.eight_bit", True,
                   "false, or install bitsandbytes")  # fmt: skip

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **overrides) -> TrainConfig:
        """A copy with dotted overrides applied, e.g. replace(**{"run.steps": 10})."""
        d = self.to_dict()
        for key, value in overrides.items():
            _assign(d, key, value)
        return from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(to_toml(self.to_dict()), encoding="utf-8")


def _check(ok: bool, name: str, value, want: str) -> None:
    if not ok:
        raise ValueError(f"config {name} = {value!r}: must be {want}")


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    return {k: v for k, v in hints.items() if dataclasses.is_dataclass(v)}


def from_dict(d: dict) -> TrainConfig:
    """Build from nested dicts; unknown keys are errors naming the valid ones."""
    sections = _sections()
    unknown = set(d) - {"stage", *sections}
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}; valid: stage, {', '.join(sections)}")
    kwargs = {"stage": d.get("stage", "flow")}
    for name, cls in sections.items():
        values = d.get(name, {}) or {}
        if not isinstance(values, dict):
            raise ValueError(f"config section [{name}] must be a table of keys, got {values!r}")
        hints = typing.get_type_hints(cls)
        bad = set(values) - set(hints)
        if bad:
            raise ValueError(f"unknown keys {sorted(bad)} in [{name}]; valid: {', '.join(hints)}")
        kwargs[name] = cls(**{k: _coerce(v, hints[k], f"{name}.{k}") for k, v in values.items()})
    return TrainConfig(**kwargs)


def _coerce(value, hint, name: str):
    """Check/convert one value (from a file or a `--set` string) to the field's type."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        args = typing.get_args(hint)
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, item, name) for v in value)
        if len(value) != len(args):
            raise ValueError(f"config {name} = {value!r}: expected {len(args)} values")
        return tuple(_coerce(v, t, name) for v, t in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError
            return value
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except ValueError:
        raise ValueError(f"config {name} = {value!r}: expected {getattr(hint, '__name__', hint)}") from None


def _assign(d: dict, dotted: str, value) -> None:
    section, _, key = dotted.partition(".")
    if not key:
        d[section] = value
        return
    if section not in d or not isinstance(d[section], dict):
        raise ValueError(f"unknown config section {section!r} in {dotted!r}; valid: {', '.join(_sections())}")
    d[section][key] = value


def parse_overrides(items: list[str]) -> dict[str, str]:
    """["run.steps=10", "optim.lr=1e-4"] -> {"run.steps": "10", ...}."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"bad override {item!r}: write section.key=value, e.g. run.steps=100")
        out[key.strip()] = value.strip()
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> TrainConfig:
    """Read a .toml / .yaml / .yml / .json config (or start from defaults) and apply `--set` overrides."""
    d: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            import tomllib

            d = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            d = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            d = json.loads(text)
        else:
            raise ValueError(f"config file {path}: use .toml, .yaml/.yml or .json")
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} must hold a table of sections, got {type(d).__name__}")
    merged = from_dict_defaults()
    for key, value in d.items():
        merged[key] = dict(value) if isinstance(value, dict) else value
    items = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    for key, value in items.items():
        _assign(merged, key, value)
    return from_dict(merged)


def from_dict_defaults() -> dict:
    """Section -> {} so that overrides can name any section before validation."""
    return {"stage": "flow", **{name: {} for name in _sections()}}


def to_toml(d: dict) -> str:
    """Nested dict of scalars, strings and lists -> TOML text (what `TrainConfig.save` writes)."""
    lines = []
    for key, value in d.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in d.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {v!r} to TOML")
