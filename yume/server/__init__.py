"""`yume serve`: play a world in the browser — one loaded model, one generation worker, a WebSocket per session."""
