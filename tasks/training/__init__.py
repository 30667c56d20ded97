"""Training: fine-tuning a classifier, its callbacks, multi-worker distribution and the SavedModel export."""
