"""Training and inference on torch: models, batching, losses, the training loop, checkpoints, activations."""
