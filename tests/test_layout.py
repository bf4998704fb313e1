"""The package's shape: imports flow one way, every module says what it is for, start-up imports nothing heavy."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "yume"

# A module of a layer may import only from the layers listed for it (plus stdlib and third-party packages).
HIGHER = {
    "yume.models": ("yume.session", "yume.world", "yume.server", "yume.eval", "yume.bench", "yume.cli", "yume.train",
                    "yume.generate", "yume.data"),
    "yume.sampling": ("yume.session", "yume.world", "yume.server", "yume.cli", "yume.models"),
    "yume.actions": ("yume.models", "yume.session", "yume.server", "yume.cli", "yume.vae"),
    "yume.session": ("yume.server", "yume.eval", "yume.bench", "yume.cli", "yume.train", "yume.generate"),
}  # fmt: skip


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(), filename=str(path))


def imported(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_lower_layers_never_import_higher_ones():
    bad = []
    for name, tree in modules():
        for layer, forbidden in HIGHER.items():
            if name == layer or name.startswith(layer + "."):
                bad += [f"{name} imports {m}" for m in imported(tree) if m.startswith(forbidden)]
    assert bad == []


def test_models_never_import_torch_distributed():
    bad = [n for n, t in modules() if n.startswith("yume.models") and any(m.startswith("torch.distributed") for m in imported(t))]
    assert bad == []


def test_every_module_starts_with_a_docstring():
    assert [n for n, t in modules() if not ast.get_docstring(t)] == []


def test_cli_help_imports_no_torch():
    code = "import sys; from yume.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
