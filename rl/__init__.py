"""tradeplane.rl: reinforcement-learning environments on the engine's simulator, trained with RLlib."""
