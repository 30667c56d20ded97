"""What each platform sends to its API: SageMaker request bodies and Kubernetes manifests, as plain dicts."""
