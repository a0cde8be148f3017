"""RLHF with PPO (TRL 1.x has none): loop.py reads as the numbered steps of one PPO step and calls the
other modules in order (docs/architecture.md follows one step through them)."""
