"""The local platform's endpoint: its commands, state folder, control socket, model registry and smoke test."""
