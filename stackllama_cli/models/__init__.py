"""Models: what a `--model` value points at (resolve.py), loading it (load.py), merging adapters (merge.py)."""
