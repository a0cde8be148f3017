"""The whole pipeline as a chain of commands (demo.py) and its HTML report (report.py)."""
