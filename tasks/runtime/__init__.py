"""What every step runs on: CPU tuning, models, remote paths, atomic outputs, SageMaker jobs, results."""
