import json

import pytest
import torch
from reference import randomize
from safetensors.torch import save_file

from yume import YumeTransformer
from yume.cli import main
from yume.models.weights import CheckpointError


def random_model(name="tiny", seed=0):
    return randomize(YumeTransformer.from_config(name, seed=seed), std=0.05, seed=seed).eval()


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("layout", ["original", "diffusers"])
def test_save_load_round_trip_is_exact(tmp_path, layout):
    model = random_model()
    model.save_pretrained(tmp_path, layout=layout)
    loaded = YumeTransformer.from_pretrained(tmp_path, dtype=torch.float32)
    assert loaded.config == model.config
    assert_same_weights(model, loaded)


def test_diffusers_layout_uses_diffusers_names(tmp_path):
    from safetensors import safe_open

    random_model().save_pretrained(tmp_path, layout="diffusers")
    with safe_open(str(tmp_path / "diffusion_pytorch_model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "blocks.0.attn1.to_q.weight" in keys and "blocks.0.norm2.weight" in keys
    assert "condition_embedder.time_proj.weight" in keys and "scale_shift_table" in keys
    assert not any(".self_attn." in k for k in keys)
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == "WanTransformer3DModel"


def test_diffusers_transformer_folder_loads_into_diffusers_model(tmp_path):
    """Our diffusers layout is what diffusers itself reads (for the plain Wan config)."""
    from diffusers import WanTransformer3DModel

    model = random_model("tiny-wan")
    model.save_pretrained(tmp_path / "transformer", layout="diffusers")
    ref = WanTransformer3DModel.from_pretrained(tmp_path / "transformer")
    ours = YumeTransformer.from_pretrained(tmp_path, dtype=torch.float32)  # root dir with transformer/
    assert_same_weights(model, ours)
    assert torch.equal(ref.blocks[1].norm2.weight, model.blocks[1].norm3.weight)


def test_sharded_checkpoint_with_index_round_trips(tmp_path):
    model = random_model()
    model.save_pretrained(tmp_path, max_shard_bytes=200_000)
    index = json.loads((tmp_path / "diffusion_pytorch_model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert_same_weights(model, YumeTransformer.from_pretrained(tmp_path, dtype=torch.float32))


def test_release_style_config_without_defaults_loads(tmp_path):
    """The release config.json leaves out patch_size, qk_norm, cross_attn_norm, text_dim: they come from defaults/shapes."""
    model = random_model()
    model.save_pretrained(tmp_path)
    cfg = model.config
    release_cfg = {
        "_class_name": "WanModel",
        "model_type": "ti2v",
        "text_len": cfg.text_len,
        "in_dim": 48,
        "dim": cfg.dim,
        "ffn_dim": cfg.ffn_dim,
        "freq_dim": cfg.freq_dim,
        "out_dim": 48,
        "num_heads": cfg.num_heads,
        "num_layers": cfg.num_layers,
        "eps": 1e-6,
    }
    (tmp_path / "config.json").write_text(json.dumps(release_cfg))
    loaded = YumeTransformer.from_pretrained(tmp_path / "diffusion_pytorch_model.safetensors", dtype=torch.float32)
    assert loaded.config == cfg


def test_dtype_choice(tmp_path):
    random_model().save_pretrained(tmp_path)
    loaded = YumeTransformer.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_truncated_file_names_the_file(tmp_path):
    random_model().save_pretrained(tmp_path)
    f = tmp_path / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[:-5000])
    with pytest.raises(CheckpointError, match=r"(?s)diffusion_pytorch_model\.safetensors.*(truncated|re-download)"):
        YumeTransformer.from_pretrained(tmp_path)


def test_wrong_shapes_are_listed(tmp_path):
    random_model().save_pretrained(tmp_path)
    state = random_model().state_dict()
    state["head.head.weight"] = torch.zeros(3, 64)
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match=r"(?s)wrong shape 1: head\.head\.weight: file \(3, 64\)"):
        YumeTransformer.from_pretrained(tmp_path)


def test_plain_wan_into_yume_config_says_missing_history_embeddings(tmp_path):
    random_model("tiny-wan").save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"(?s)missing 10: patch_embedding_16x.*plain Wan2\.2"):
        YumeTransformer.from_pretrained(tmp_path, config="tiny")


def test_not_a_dit_says_so(tmp_path):
    save_file({"encoder.conv1.weight": torch.zeros(2)}, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match="not a Wan/Yume DiT"):
        YumeTransformer.from_pretrained(tmp_path)


def test_empty_directory_lists_what_it_holds(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match=r"(?s)no DiT weights found.*notes\.txt"):
        YumeTransformer.from_pretrained(tmp_path)


def test_inspect_explains_a_synthetic_release_directory(tmp_path, capsys):
    random_model().save_pretrained(tmp_path)
    (tmp_path / "Wan2.2_VAE.pth").write_bytes(b"0")
    (tmp_path / "google" / "umt5-xxl").mkdir(parents=True)
    (tmp_path / "google" / "umt5-xxl" / "spiece.model").write_bytes(b"0")
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    n = sum(p.numel() for p in random_model().parameters())
    assert "DiT: present — Yume (Wan2.2 + history patch embeddings)" in out
    assert f"parameters: {n:,}" in out and "layout: original" in out and "dtype: f32" in out
    assert "VAE: present (Wan2.2_VAE.pth)" in out
    assert "T5 text encoder: missing" in out
    assert "tokenizer: present" in out


def test_inspect_recognises_plain_wan_in_diffusers_layout(tmp_path, capsys):
    random_model("tiny-wan").save_pretrained(tmp_path / "transformer", layout="diffusers")
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "plain Wan2.2 (no history embeddings)" in out and "layout: diffusers" in out
    assert "VAE: present (vae/config.json)" in out


def test_inspect_missing_path_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_name_table_maps_the_5b_keys_onto_diffusers_and_back():
    from diffusers import WanTransformer3DModel

    from yume.models.weights import rename_key

    ours = YumeTransformer.from_config("wan2.2-ti2v-5b", device="meta").state_dict()
    with torch.device("meta"):
        ref = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48,
                                    out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30)  # fmt: skip
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    mapped = {rename_key(k, "to_diffusers"): tuple(v.shape) for k, v in ours.items()}
    assert mapped == theirs
    assert all(rename_key(rename_key(k, "to_diffusers"), "to_original") == k for k in ours)
