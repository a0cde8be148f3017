"""stackllama: StackExchange dump -> SFT -> reward model -> PPO, on current libraries."""

__version__ = "0.1.0"
