"""Compression: INT8 quantisation of a trained model with Intel Neural Compressor."""
