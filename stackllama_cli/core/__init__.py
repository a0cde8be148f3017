"""Foundations every layer uses: errors, stage configs, atomic files and output-dir rules, the console,
the metrics log. Nothing here knows about models or training."""
