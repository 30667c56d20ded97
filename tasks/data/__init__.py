"""Data: the generated sample, staging (reading, checking, tokenising) and the staged splits as tf.data."""
