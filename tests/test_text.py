import shutil

import pytest
import torch

from yume.actions import ALL_ACTIONS, Action, action_caption, caption
from yume.models.text import (
    TEXT_ENCODER_PRESETS,
    TINY_TOKENIZER,
    WAN_T5_FILE,
    WAN_TOKENIZER_DIR,
    EmbeddingCache,
    TextEncoder,
    _config_from_wan,
    encode_prompt,
    hf_to_wan_t5,
    pad,
    wan_t5_to_hf,
)


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.from_config("tiny", seed=0, d_model=32)


def test_shipped_tiny_tokenizer_is_used_not_unk(encoder):
    tok = encoder.tokenizer
    assert (TINY_TOKENIZER / "spiece.model").stat().st_size < 16_000
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    for vocab in ("1.5", "1.0"):
        for action in ALL_ACTIONS:
            text = caption(action, "A ghost appeared in the street.", vocab)
            ids = tok(text).input_ids
            assert tok.unk_token_id not in ids and ids[-1] == tok.eos_token_id
            assert tok.decode(ids, skip_special_tokens=True) == text


def test_shipped_tokenizer_json_matches_the_sentencepiece_model(tmp_path):
    """tokenizer.json (read without a sentencepiece conversion) gives the ids of spiece.model alone."""
    import shutil

    from transformers import AutoTokenizer

    shutil.copytree(TINY_TOKENIZER, tmp_path / "spm", ignore=shutil.ignore_patterns("tokenizer.json"))
    from_json, from_spm = AutoTokenizer.from_pretrained(TINY_TOKENIZER), AutoTokenizer.from_pretrained(tmp_path / "spm")
    texts = (TINY_TOKENIZER / "corpus.txt").read_text(encoding="utf-8").splitlines()
    texts += [caption(a, "A red balloon appears.", v) for v in ("1.5", "1.0") for a in ALL_ACTIONS]
    texts += ["", "  two  spaces ", "Ünïcode → ←, 42!"]
    assert len(from_json) == len(from_spm)
    assert [from_json(t).input_ids for t in texts] == [from_spm(t).input_ids for t in texts]


def test_tiny_encoder_is_deterministic_per_seed():
    a, b = TextEncoder.from_config("tiny", seed=0, d_model=32), TextEncoder.from_config("tiny", seed=0, d_model=32)
    c = TextEncoder.from_config("tiny", seed=1, d_model=32)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.shared.weight, c.model.shared.weight)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    wide = TextEncoder.from_config("tiny", seed=0, d_model=64)
    assert wide.dim == 64 and wide.encode(["A ghost"])[0].shape[1] == 64


def test_encode_true_length_and_batch_padding_invariance(encoder):
    texts = ["A ghost appeared.", caption(Action("W+D", "↑"), "A red car drives past.")]
    embs = encoder.encode(texts)
    for text, emb in zip(texts, embs):
        assert emb.shape == (encoder.token_count(text), 32)
        alone = encoder.encode([text])[0]
        torch.testing.assert_close(emb, alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="list of strings"):
        encoder.encode("A ghost")


def test_encode_truncates_to_text_len():
    short = TextEncoder.from_config("tiny", seed=0, d_model=32, text_len=16)
    long_text = caption(Action("W"), "A crowded market square in the afternoon sun, people walking past stalls.")
    assert short.encode([long_text])[0].shape == (16, 32)


def test_pad_zero_fills_to_text_len():
    embs = [torch.ones(3, 4), torch.ones(5, 4)]
    out = pad(embs, 8)
    assert out.shape == (2, 8, 4)
    assert out[0, :3].eq(1).all() and out[0, 3:].eq(0).all() and out[1, 5:].eq(0).all()
    with pytest.raises(ValueError, match="5 tokens, more than text_len=4"):
        pad(embs, 4)


def test_wan_key_map_round_trip(encoder):
    hf = encoder.model.state_dict()
    wan = hf_to_wan_t5(hf)
    assert len(wan) == len(hf) - 1  # the tied embed_tokens copy is stored once
    assert {
        "token_embedding.weight",
        "norm.weight",
        "blocks.1.ffn.gate.0.weight",
        "blocks.0.pos_embedding.embedding.weight",
    } <= set(wan)
    assert torch.equal(wan["blocks.1.ffn.fc1.weight"], hf["encoder.block.1.layer.1.DenseReluDense.wi_1.weight"])
    back = wan_t5_to_hf(wan)
    assert set(back) == set(hf) - {"encoder.embed_tokens.weight"}
    assert all(torch.equal(back[k], hf[k]) for k in back)
    with pytest.raises(ValueError, match="not Wan T5 encoder names"):
        wan_t5_to_hf({"blocks.0.attn.x.weight": torch.zeros(1)})


def _wan_dir(tmp_path, encoder, drop=None):
    wan = hf_to_wan_t5(encoder.model.state_dict())
    if drop:
        del wan[drop]
    torch.save(wan, tmp_path / WAN_T5_FILE)
    shutil.copytree(TINY_TOKENIZER, tmp_path / WAN_TOKENIZER_DIR)
    return tmp_path


def test_from_pretrained_wan_layout_loads_back_equal(tmp_path, encoder):
    loaded = TextEncoder.from_pretrained(_wan_dir(tmp_path, encoder), dtype=torch.float32)
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert loaded.model.encoder.embed_tokens.weight is loaded.model.shared.weight
    text = ["First-person perspective. The camera tilts up (↑)."]
    torch.testing.assert_close(loaded.encode(text)[0], encoder.encode(text)[0])
    assert loaded.fingerprint == encoder.fingerprint


def test_from_pretrained_names_missing_keys(tmp_path, encoder):
    _wan_dir(tmp_path, encoder, drop="blocks.1.attn.k.weight")
    with pytest.raises(ValueError, match=r"missing 1: encoder\.block\.1\.layer\.0\.SelfAttention\.k\.weight"):
        TextEncoder.from_pretrained(tmp_path, dtype=torch.float32)


def test_from_pretrained_diffusers_layout(tmp_path, encoder):
    encoder.model.save_pretrained(tmp_path / "text_encoder")
    encoder.tokenizer.save_pretrained(tmp_path / "tokenizer")
    loaded = TextEncoder.from_pretrained(tmp_path, dtype=torch.float32)
    torch.testing.assert_close(loaded.encode(["A ghost"])[0], encoder.encode(["A ghost"])[0])


def test_from_pretrained_errors(tmp_path, encoder):
    with pytest.raises(FileNotFoundError, match="expected models_t5_umt5-xxl-enc-bf16.pth.*text_encoder/"):
        TextEncoder.from_pretrained(tmp_path)
    torch.save(hf_to_wan_t5(encoder.model.state_dict()), tmp_path / WAN_T5_FILE)
    with pytest.raises(FileNotFoundError, match="no tokenizer folder"):
        TextEncoder.from_pretrained(tmp_path)


def test_encode_prompt_joined_is_one_encoded_caption(encoder):
    action = Action("W", "→")
    got = encode_prompt(encoder, action, "A ghost appeared.")
    torch.testing.assert_close(got, encoder.encode([caption(action, "A ghost appeared.")])[0])
    with pytest.raises(ValueError, match="unknown prompt mode 'both'"):
        encode_prompt(encoder, action, None, mode="both")


def test_encode_prompt_decomposed_concatenates_and_truncates_the_event():
    action, event = Action("S+D", "↓←"), "A fire-breathing dragon appeared in the sky."
    n_action = TextEncoder.from_config("tiny").token_count(action_caption(action))
    enc = TextEncoder.from_config("tiny", seed=0, d_model=32, text_len=n_action + 3)
    a_emb = enc.encode([action_caption(action)])[0]
    e_emb = enc.encode([event])[0]
    assert a_emb.shape[0] == n_action and e_emb.shape[0] > 3
    got = encode_prompt(enc, action, event, mode="decomposed")
    assert got.shape == (enc.text_len, 32)
    torch.testing.assert_close(got, torch.cat([a_emb, e_emb[:3]]))
    assert encode_prompt(enc, action, None, mode="decomposed").shape[0] == n_action


def _counting(encoder):
    calls = []
    original = encoder.encode

    def encode(texts):
        calls.append(list(texts))
        return original(texts)

    encoder.encode = encode
    return calls


def test_cache_warm_actions_once_and_hits_across_instances(tmp_path):
    enc = TextEncoder.from_config("tiny", seed=0, d_model=32)
    calls = _counting(enc)
    cache = EmbeddingCache(tmp_path)
    assert cache.warm_actions(enc) == 81
    assert sum(len(c) for c in calls) == 81
    assert cache.warm_actions(enc) == 0 and cache.stats["memory"] == 81

    fresh = TextEncoder.from_config("tiny", seed=0, d_model=32)  # a new process would rebuild it like this

    def refuse(texts):
        raise AssertionError(f"encoder called for {texts}")

    fresh.encode = refuse
    second = EmbeddingCache(tmp_path)
    text = action_caption(Action("W+A", "↑←"))
    got = encode_prompt(fresh, Action("W+A", "↑←"), None, mode="decomposed", cache=second)
    assert second.stats == {"memory": 0, "disk": 1, "encoded": 0}
    torch.testing.assert_close(got, enc.encode([text])[0])


def test_cache_events_encoded_once_and_keyed_by_encoder(tmp_path):
    enc = TextEncoder.from_config("tiny", seed=0, d_model=32)
    calls = _counting(enc)
    cache = EmbeddingCache(tmp_path, memory_items=2)
    for action in [Action("W"), Action("W", "→"), Action("")]:
        encode_prompt(enc, action, "A ghost appeared.", mode="decomposed", cache=cache)
    assert calls.count(["A ghost appeared."]) == 1
    assert len(cache._memory) == 2  # LRU bound
    other = TextEncoder.from_config("tiny", seed=1, d_model=32)
    other_calls = _counting(other)
    cache.get(other, "A ghost appeared.")
    assert other_calls == [["A ghost appeared."]]  # a different encoder never reads the first one's entries


def test_wan_xxl_shapes_give_the_umt5_xxl_config():
    meta = dict(device="meta")
    wan = {"token_embedding.weight": torch.empty(256384, 4096, **meta), "norm.weight": torch.empty(4096, **meta)}
    for i in range(24):
        wan[f"blocks.{i}.attn.q.weight"] = torch.empty(4096, 4096, **meta)
        wan[f"blocks.{i}.pos_embedding.embedding.weight"] = torch.empty(32, 64, **meta)
        wan[f"blocks.{i}.ffn.fc1.weight"] = torch.empty(10240, 4096, **meta)
    cfg = _config_from_wan(wan)
    got = {k: getattr(cfg, k) for k in TEXT_ENCODER_PRESETS["umt5-xxl"]}
    assert got == TEXT_ENCODER_PRESETS["umt5-xxl"]
    assert (cfg.relative_attention_num_buckets, cfg.dense_act_fn, cfg.is_gated_act) == (32, "gelu_new", True)
