import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from reference import randomize

from yume import YumeTransformer
from yume.models.i2v import YumeI2VTransformer
from yume.offload import enable_block_offload
from yume.session import SessionConfig, WorldSession
from yume.world import WorldModel


def randomized(model_class, name, seed=0):
    return randomize(model_class.from_config(name), seed=seed).eval()


def test_offloaded_blocks_give_identical_outputs_and_return_to_the_offload_device():
    model = randomized(YumeTransformer, "tiny")
    x, history, ctx = torch.randn(1, 48, 2, 8, 8), torch.randn(1, 48, 9, 8, 8), torch.randn(1, 32, 32)
    with torch.no_grad():
        expected = model(x, torch.tensor([0.7]), ctx, history)
    enable_block_offload(model, "cpu")
    stored = [p.data_ptr() for p in model.blocks.parameters()]
    seen = []
    for block in model.blocks:  # registered after the offload hooks, so it runs after the copy in
        block.register_forward_pre_hook(lambda m, args: seen.append([p.data_ptr() for p in m.parameters()]))
    with torch.no_grad():
        out = model(x, torch.tensor([0.7]), ctx, history)
    assert torch.equal(out, expected)
    assert len(seen) == len(model.blocks)
    in_forward = [ptr for block_ptrs in seen for ptr in block_ptrs]
    assert not set(in_forward) & set(stored)  # each forward read a fresh copy of its block
    assert [p.data_ptr() for p in model.blocks.parameters()] == stored
    assert all(p.device.type == "cpu" for p in model.blocks.parameters())


def test_i2v_model_offloaded_gives_identical_outputs():
    model = randomized(YumeI2VTransformer, "tiny-i2v")
    cfg = model.config
    x, past = torch.randn(1, cfg.out_dim, 2, 8, 8), torch.randn(1, cfg.out_dim, 3, 8, 8)
    cond, clip = torch.randn(1, cfg.in_dim - cfg.out_dim, 5, 8, 8), torch.randn(1, 257, cfg.image_dim)
    ctx = torch.randn(1, 16, cfg.text_dim)
    with torch.no_grad():
        expected = model(x, torch.tensor([0.5]), ctx, past, cond=cond, image=clip)
        out = enable_block_offload(model, "cpu")(x, torch.tensor([0.5]), ctx, past, cond=cond, image=clip)
    assert torch.equal(out, expected)


def test_non_block_parts_go_to_the_device_and_blocks_stay_behind():
    model = enable_block_offload(YumeTransformer.from_config("tiny"), "meta")
    assert {p.device.type for n, p in model.named_parameters() if not n.startswith("blocks.")} == {"meta"}
    assert {p.device.type for p in model.blocks.parameters()} == {"cpu"}


def test_a_failing_block_forward_still_puts_its_weights_back():
    model = enable_block_offload(YumeTransformer.from_config("tiny"), "cpu")
    stored = [p.data_ptr() for p in model.blocks[0].parameters()]

    def fail(module, args):
        raise RuntimeError("out of memory")

    model.blocks[0].register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="out of memory"), torch.no_grad():
        model(torch.randn(1, 48, 1, 8, 8), torch.tensor([0.5]), torch.randn(1, 32, 32))
    assert [p.data_ptr() for p in model.blocks[0].parameters()] == stored


def test_a_model_without_blocks_is_a_clear_error():
    with pytest.raises(ValueError, match="Linear has no non-empty ModuleList 'blocks'"):
        enable_block_offload(torch.nn.Linear(2, 2), "cpu")


def test_models_never_import_the_offload_module():
    package = Path(__file__).resolve().parents[1] / "yume" / "models"
    bad = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and "offload" in node.module:
                bad.append(path.name)
            elif isinstance(node, ast.Import) and any("offload" in a.name for a in node.names):
                bad.append(path.name)
    assert bad == []


def test_world_with_block_offload_makes_the_same_chunk(tmp_path):
    config = SessionConfig(steps=2, chunk_latents=2, height=64, width=64)
    plain = WorldModel.load("tiny-random", device="cpu", cache_dir=tmp_path)
    offloaded = WorldModel.load("tiny-random", device="cpu", offload="blocks", cache_dir=tmp_path)
    assert offloaded.offload == "blocks" and offloaded.dit.blocks[0]._forward_pre_hooks
    assert WorldModel.load("tiny-random", device="cpu", offload=True).offload == "text"
    a = WorldSession(plain, "a street", config=config).step("W")
    b = WorldSession(offloaded, "a street", config=config).step("W")
    assert np.array_equal(a.frames, b.frames)
    with pytest.raises(ValueError, match="offload='disk': choose"):
        WorldModel.load("tiny-random", device="cpu", offload="disk")


@pytest.mark.parametrize(("args", "mode"), [([], None), (["--offload"], "text"), (["--offload", "blocks"], "blocks")])
@pytest.mark.parametrize("command", [["generate", "--prompt", "x"], ["serve"]])
def test_generate_and_serve_offload_option_defaults_to_text_when_given_alone(command, args, mode):
    from yume.cli import build_parser

    assert build_parser().parse_args([*command, *args]).offload == mode
