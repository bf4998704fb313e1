"""UMT5 text encoding as Wan does it, action/event prompt modes, and the persistent embedding cache."""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from yume.actions import ALL_ACTIONS, VOCABULARIES, Action, action_caption, caption, speed_caption, vocabulary
from yume.models.weights import mismatch_lines

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TINY_TOKENIZER = ASSETS / "tiny_tokenizer"

WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_TOKENIZER_DIR = "google/umt5-xxl"

# Encoder shapes (HF UMT5Config names). vocab_size None = the tokenizer's size.
TEXT_ENCODER_PRESETS: dict[str, dict] = {
    "umt5-xxl": dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64),
    "tiny": dict(vocab_size=None, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4),
}
_COMMON = dict(
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",  # GELU(tanh) gate, as Wan's T5
    layer_norm_epsilon=1e-6,
    dropout_rate=0.0,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    is_encoder_decoder=False,
    use_cache=False,
)

# Wan's own T5 names (wan/modules/t5.py, encoder only, one relative-position table per block) <-> HF UMT5 names.
_T5_NAMES = [
    ("token_embedding.weight", "shared.weight"),
    ("norm.weight", "encoder.final_layer_norm.weight"),
    ("blocks.{i}.norm1.weight", "encoder.block.{i}.layer.0.layer_norm.weight"),
    ("blocks.{i}.attn.{p}.weight", "encoder.block.{i}.layer.0.SelfAttention.{p}.weight"),
    (
        "blocks.{i}.pos_embedding.embedding.weight",
        "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight",
    ),
    ("blocks.{i}.norm2.weight", "encoder.block.{i}.layer.1.layer_norm.weight"),
    ("blocks.{i}.ffn.gate.0.weight", "encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight"),  # GELU branch
    ("blocks.{i}.ffn.fc1.weight", "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight"),  # linear branch
    ("blocks.{i}.ffn.fc2.weight", "encoder.block.{i}.layer.1.DenseReluDense.wo.weight"),
]
_HF_TIED = "encoder.embed_tokens.weight"  # tied to shared.weight; Wan stores it once


def _regex(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>[qkvo])"))


_WAN_TO_HF = [(_regex(wan), hf) for wan, hf in _T5_NAMES]
_HF_TO_WAN = [(_regex(hf), wan) for wan, hf in _T5_NAMES]


def _rename(state_dict: dict, rules, what: str) -> dict:
    out, unknown = {}, []
    for key, value in state_dict.items():
        for pattern, target in rules:
            if m := pattern.fullmatch(key):
                out[target.format(**m.groupdict())] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{len(unknown)} keys are not {what} T5 encoder names, e.g. {unknown[:5]}")
    return out


def wan_t5_to_hf(state_dict: dict) -> dict:
    """Wan's `models_t5_umt5-xxl-enc-bf16.pth` keys → transformers `UMT5EncoderModel` keys."""
    return _rename(state_dict, _WAN_TO_HF, "Wan")


def hf_to_wan_t5(state_dict: dict) -> dict:
    """`UMT5EncoderModel` keys → Wan's T5 encoder keys (the tied `encoder.embed_tokens` copy is dropped)."""
    return _rename({k: v for k, v in state_dict.items() if k != _HF_TIED}, _HF_TO_WAN, "HF UMT5")


def clean_text(text: str) -> str:
    """Wan's tokenizer clean='whitespace': unescape HTML twice, collapse whitespace, strip (ftfy step left out)."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


def _umt5_config(preset: str, vocab_size: int, **overrides) -> UMT5Config:
    try:
        shape = dict(TEXT_ENCODER_PRESETS[preset])
    except KeyError:
        raise ValueError(
            f"unknown text encoder preset {preset!r}; choose one of {', '.join(TEXT_ENCODER_PRESETS)}"
        ) from None
    shape.update(overrides)
    if shape["vocab_size"] is None:
        shape["vocab_size"] = vocab_size
    if "d_model" in overrides and "d_kv" not in overrides:
        if shape["d_model"] % shape["num_heads"]:
            raise ValueError(f"d_model={shape['d_model']} is not divisible by num_heads={shape['num_heads']}")
        shape["d_kv"] = shape["d_model"] // shape["num_heads"]
    return UMT5Config(**shape, **_COMMON)


class TextEncoder:
    """A UMT5 encoder + tokenizer used exactly as Wan uses its T5: true-length embeddings of ≤ text_len tokens."""

    def __init__(self, model: UMT5EncoderModel, tokenizer, text_len: int = 512, source: str = ""):
        if text_len < 2:
            raise ValueError(f"text_len must be >= 2 (a token and EOS), got {text_len}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_len = text_len
        self.source = source
        self._fingerprint: str | None = None

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.shared.weight.dtype

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    def to(self, device) -> TextEncoder:
        self.model.to(device)
        return self

    @classmethod
    def from_config(
        cls,
        name: str = "tiny",
        seed: int = 0,
        d_model: int | None = None,
        text_len: int = 512,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> TextEncoder:
        """A randomly initialised encoder (deterministic for a seed) with the shipped tiny tokenizer.

        d_model must match the DiT's text_dim (32 for the tiny DiT); text_len should be the DiT's text_len.
        """
        tokenizer = AutoTokenizer.from_pretrained(TINY_TOKENIZER)
        overrides = {} if d_model is None else {"d_model": d_model}
        config = _umt5_config(name, len(tokenizer), **overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = UMT5EncoderModel(config)
        return cls(model.to(device=device, dtype=dtype), tokenizer, text_len, source=f"random:{name}:seed={seed}")

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        text_len: int = 512,
    ) -> TextEncoder:
        """Load from a Wan/Yume model dir (`models_t5_umt5-xxl-enc-bf16.pth` + `google/umt5-xxl/`) or a
        diffusers dir (`text_encoder/` + `tokenizer/`)."""
        path = Path(path)
        wan_file = path if path.is_file() else path / WAN_T5_FILE
        if wan_file.is_file():
            tokenizer_dir = wan_file.parent / WAN_TOKENIZER_DIR
            if not tokenizer_dir.is_dir():
                raise FileNotFoundError(
                    f"found {wan_file} but no tokenizer folder {tokenizer_dir}; the Wan/Yume release ships it "
                    f"(e.g. stdstu123/Yume-5B-720P/{WAN_TOKENIZER_DIR})"
                )
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            model = load_wan_t5(wan_file, dtype, device)
            return cls(model, tokenizer, text_len, source=str(wan_file))
        if (path / "text_encoder").is_dir():
            if not (path / "tokenizer").is_dir():
                raise FileNotFoundError(f"found {path / 'text_encoder'} but no {path / 'tokenizer'} folder beside it")
            model = UMT5EncoderModel.from_pretrained(path / "text_encoder", dtype=dtype).to(device)
            tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
            return cls(model, tokenizer, text_len, source=str(path / "text_encoder"))
        raise FileNotFoundError(
            f"no text encoder in {path}: expected {WAN_T5_FILE} + {WAN_TOKENIZER_DIR}/ (Wan/Yume layout, e.g. "
            "stdstu123/Yume-5B-720P) or text_encoder/ + tokenizer/ (diffusers layout, e.g. "
            "Wan-AI/Wan2.2-TI2V-5B-Diffusers)"
        )

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the diffusers layout (`text_encoder/` + `tokenizer/`) that `from_pretrained` reads back.

        A built-in model ships its tiny encoder this way, so its embeddings do not hang on how a future
        transformers release initialises a UMT5 from a seed.
        """
        directory = Path(directory)
        self.model.save_pretrained(directory / "text_encoder", safe_serialization=True)
        self.tokenizer.save_pretrained(directory / "tokenizer")

    @torch.no_grad()
    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        """Texts → one embedding [L_i, D] each, L_i = the true token count (EOS included, ≤ text_len).

        Padding only to the longest text of the batch: padded keys are masked, so the result equals Wan's
        padding to 512.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings; wrap a single text as [text]")
        if not texts:
            return []
        batch = self.tokenizer(
            [clean_text(t) for t in texts],
            padding="longest",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = batch.input_ids.to(self.device)
        mask = batch.attention_mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, D]
        return [h[:n] for h, n in zip(hidden, mask.sum(dim=1).tolist())]

    def token_count(self, text: str) -> int:
        """Tokens `encode` would keep for this text (EOS included, capped at text_len)."""
        return min(len(self.tokenizer(clean_text(text)).input_ids), self.text_len)

    @property
    def fingerprint(self) -> str:
        """Identity of (config, tokenizer, weights, text_len) for cache keys; weights hashed from a few slices."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            cfg = self.model.config
            shape = {k: getattr(cfg, k) for k in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")}
            h.update(json.dumps({"shape": shape, "text_len": self.text_len, "dtype": str(self.dtype)}).encode())
            probe = "First-person perspective. The camera pans to the right (→). A ghost appeared."
            h.update(json.dumps([len(self.tokenizer), self.tokenizer(probe).input_ids]).encode())
            params = dict(self.model.named_parameters())
            last = cfg.num_layers - 1
            for name in (
                "shared.weight",
                "encoder.block.0.layer.0.SelfAttention.q.weight",
                f"encoder.block.{last}.layer.1.DenseReluDense.wo.weight",
                "encoder.final_layer_norm.weight",
            ):
                p = params[name].detach()
                sample = torch.cat([p.reshape(-1)[:256], p.reshape(-1)[-256:]]).float().cpu()
                h.update(sample.numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def _config_from_wan(state: dict) -> UMT5Config:
    """Read the encoder shape off Wan-named tensors (so the same loader serves umt5-xxl and test-sized files)."""
    try:
        vocab_size, d_model = state["token_embedding.weight"].shape
        num_heads = state["blocks.0.pos_embedding.embedding.weight"].shape[1]
        d_ff = state["blocks.0.ffn.fc1.weight"].shape[0]
        dim_attn = state["blocks.0.attn.q.weight"].shape[0]
    except KeyError as e:
        raise ValueError(f"not a Wan T5 encoder checkpoint: no {e.args[0]} (keys start {list(state)[:5]})") from None
    num_layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    shape = dict(
        vocab_size=vocab_size, d_model=d_model, d_kv=dim_attn // num_heads, d_ff=d_ff,
        num_layers=num_layers, num_heads=num_heads,
    )  # fmt: skip
    return UMT5Config(**shape, **_COMMON)


def load_wan_t5(file: str | Path, dtype: torch.dtype = torch.bfloat16, device="cpu") -> UMT5EncoderModel:
    """Build a UMT5 encoder on meta and assign Wan's T5 weights (renamed) into it; exact key and shape check."""
    wan = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
    config = _config_from_wan(wan)
    state = wan_t5_to_hf(wan)
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != _HF_TIED}
    problems = mismatch_lines({k: v.shape for k, v in state.items()}, expected)
    if problems:
        raise ValueError("\n".join([f"{file}: {len(state)} T5 tensors, expected {len(expected)} for "
                                     f"{config.num_layers} layers — is the file complete?", *problems]))  # fmt: skip
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    state[_HF_TIED] = state["shared.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    return model.eval().requires_grad_(False)


def pad(embs: list[torch.Tensor], text_len: int) -> torch.Tensor:
    """[L_i, D] embeddings → [B, text_len, D], zero-padded at the end as Wan does."""
    for i, e in enumerate(embs):
        if e.shape[0] > text_len:
            raise ValueError(f"embedding {i} has {e.shape[0]} tokens, more than text_len={text_len}")
    return torch.stack([torch.cat([e, e.new_zeros(text_len - e.shape[0], e.shape[1])]) for e in embs])


def encode_prompt(
    encoder: TextEncoder,
    action: Action,
    event: str | None,
    mode: str = "joined",
    cache: EmbeddingCache | None = None,
    vocab: str = "1.5",
    stationary: bool = True,
    speed: tuple[float, float, float] | None = None,
) -> torch.Tensor:
    """The text condition [L, D] for one chunk.

    joined (the release): one caption string encoded at once.
    decomposed (the paper): the action caption (+ speed sentences) and the event text encoded separately and
    concatenated; at most encoder.text_len tokens, the event's tail cut first.
    """
    v = vocabulary(vocab)

    def get(text: str) -> torch.Tensor:
        return cache.get(encoder, text) if cache is not None else encoder.encode([text])[0]

    if mode == "joined":
        return get(caption(action, event, v, stationary, speed))
    if mode != "decomposed":
        raise ValueError(f"unknown prompt mode {mode!r}; choose 'joined' (release) or 'decomposed' (paper)")
    action_text = action_caption(action, v, stationary)
    if speed is not None:
        action_text = v.separator.join([action_text, speed_caption(speed, v)])
    parts = [get(action_text)[: encoder.text_len]]
    room = encoder.text_len - parts[0].shape[0]
    if event and event.strip() and room > 0:
        parts.append(get(event.strip())[:room])
    return torch.cat(parts)


class EmbeddingCache:
    """Text → embedding, in memory (LRU) over a directory of safetensors files keyed by text and encoder identity.

    Layout: `directory/<encoder fingerprint[:16]>/<sha256(text)[:32]>.safetensors`, the text and the full
    fingerprint in the file's metadata. Entries are stored on the CPU and returned on the encoder's device.
    """

    def __init__(self, directory: str | Path, memory_items: int = 512):
        self.directory = Path(directory)
        self.memory_items = memory_items
        self._memory: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self.stats = {"memory": 0, "disk": 0, "encoded": 0}

    def _file(self, fingerprint: str, text: str) -> Path:
        return self.directory / fingerprint[:16] / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.safetensors"

    def _remember(self, key: tuple[str, str], emb: torch.Tensor) -> None:
        self._memory[key] = emb
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    def _read(self, fingerprint: str, text: str) -> torch.Tensor | None:
        file = self._file(fingerprint, text)
        if not file.is_file():
            return None
        from safetensors import safe_open

        with safe_open(file, framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("text") != text or meta.get("encoder") != fingerprint:
            return None
        return load_file(file)["embedding"]

    def _write(self, fingerprint: str, text: str, emb: torch.Tensor) -> None:
        file = self._file(fingerprint, text)
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"embedding": emb.contiguous()}, tmp, metadata={"text": text, "encoder": fingerprint})
            os.replace(tmp, file)  # atomic: a reader never sees half a file
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def get_many(self, encoder: TextEncoder, texts: list[str]) -> list[torch.Tensor]:
        """Embeddings [L_i, D] for texts; misses are encoded in one batch and stored."""
        fp = encoder.fingerprint
        found: dict[str, torch.Tensor] = {}
        for text in dict.fromkeys(texts):
            key = (fp, text)
            if key in self._memory:
                self._memory.move_to_end(key)
                found[text] = self._memory[key]
                self.stats["memory"] += 1
            elif (emb := self._read(fp, text)) is not None:
                self._remember(key, emb)
                found[text] = emb
                self.stats["disk"] += 1
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            for text, emb in zip(missing, encoder.encode(missing)):
                emb = emb.detach().cpu()
                self._write(fp, text, emb)
                self._remember((fp, text), emb)
                found[text] = emb
            self.stats["encoded"] += len(missing)
        return [found[t].to(encoder.device) for t in texts]

    def get(self, encoder: TextEncoder, text: str) -> torch.Tensor:
        return self.get_many(encoder, [text])[0]

    def warm_actions(
        self, encoder: TextEncoder, vocab: str = "1.5", stationary: bool = True, batch_size: int = 27
    ) -> int:
        """Make sure the 81 action captions (decomposed mode) are stored; returns how many had to be encoded."""
        before = self.stats["encoded"]
        texts = [action_caption(a, vocab, stationary) for a in ALL_ACTIONS]
        for i in range(0, len(texts), batch_size):
            self.get_many(encoder, texts[i : i + batch_size])
        return self.stats["encoded"] - before


def build_tiny_tokenizer(directory: str | Path, vocab_size: int = 512) -> Path:
    """Train the tiny sentencepiece model shipped in `yume/assets/tiny_tokenizer/` (how that asset was made).

    Corpus: every sentence of both action vocabularies + `corpus.txt` (scene and event sentences). Unigram
    model with T5's special ids (pad 0, eos 1, unk 2) and no normalisation rules (keeps the file a few KB).
    """
    import sentencepiece as spm

    lines = (TINY_TOKENIZER / "corpus.txt").read_text(encoding="utf-8").splitlines()
    for v in VOCABULARIES.values():
        lines += [v.prefix, *v.moves.values(), *v.rotations.values(), speed_caption((4, 0, 0), v)]
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=proto,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        normalization_rule_name="identity",
        num_threads=1,
        minloglevel=2,
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spiece.model").write_bytes(proto.getvalue())
    config = {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "model_max_length": 512}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    # The fast tokenizer's own file too: loaders then need no sentencepiece conversion, which in
    # transformers 5.17 / tokenizers 0.23 fails on this model's empty (identity) normaliser charsmap.
    AutoTokenizer.from_pretrained(directory).backend_tokenizer.save(str(directory / "tokenizer.json"))
    return directory
