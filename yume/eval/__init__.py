"""Offline evaluation: instruction following from estimated camera motion, and the five VBench-style metrics."""

from yume.eval.metrics import METRICS, ModelPaths, quality_metrics
from yume.eval.motion import ChunkMotion, MotionConfig, estimate_chunk
from yume.eval.score import (
    Case,
    Chunk,
    chunk_windows,
    load_benchmark,
    markdown,
    parse_chunks,
    run_cases,
    score_dir,
    score_video,
    summary,
    write_reports,
)  # fmt: skip

__all__ = [
    "METRICS", "Case", "Chunk", "ChunkMotion", "ModelPaths", "MotionConfig", "chunk_windows", "estimate_chunk",
    "load_benchmark", "markdown", "parse_chunks", "quality_metrics", "run_cases", "score_dir", "score_video",
    "summary", "write_reports",
]  # fmt: skip
