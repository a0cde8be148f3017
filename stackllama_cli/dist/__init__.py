"""Several processes: re-executing under `accelerate launch` (relaunch.py), what the parent shows of
its children (launcher_output.py), and rank helpers for code that runs in each process (ranks.py)."""
