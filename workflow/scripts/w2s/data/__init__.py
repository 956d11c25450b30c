"""Tasks, splits, the materialised PyPI data and models, and the activation files probes read."""
