"""Evaluation: scoring and timing saved models, the promote/reject gate, reports and run summaries."""
