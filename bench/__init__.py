"""The harness: time forward, forward-backward and training steps of zoo models in isolated worker processes."""
