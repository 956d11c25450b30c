"""Weak-to-strong generalisation experiments: the library behind the Snakemake rules."""
