"""One module per pipeline stage, each with its config dataclass and a `run(config)`; PPO, which has its
own loop, is the package stages/ppo/."""
