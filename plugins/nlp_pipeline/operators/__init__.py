"""How each platform runs a step: a subprocess (local), SageMaker jobs, Kubernetes pods and TFJobs; and the
rollout's approval, the same on every platform."""
