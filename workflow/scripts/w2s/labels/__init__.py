"""Where a student's labels come from: intervention cells, probes on frozen features, label tables."""
