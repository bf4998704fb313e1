"""yume: an open implementation of Yume-1.5, the text-controlled interactive world generator."""

__version__ = "0.1.0"

__all__ = ["YumeTransformer", "ModelConfig"]


def __getattr__(name):
    # Lazy so that `import yume` (and the CLI's start-up) does not pay for torch/diffusers imports.
    if name == "YumeTransformer":
        from yume.models.wan import YumeTransformer

        return YumeTransformer
    if name == "ModelConfig":
        from yume.config import ModelConfig

        return ModelConfig
    raise AttributeError(f"module 'yume' has no attribute {name!r}")
