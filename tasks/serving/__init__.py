"""Serving: the HTTP inference server, its dynamic batching, the served model and its hot swap, the answer contract."""
