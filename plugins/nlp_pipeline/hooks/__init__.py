"""Calls to a platform's API that no provider operator makes: the Kubernetes server's rollout."""
