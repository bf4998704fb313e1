"""Benchmark commands that print tables: time and token counts of the model and the session."""
