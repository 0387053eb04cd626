"""The model-facing layer: providers (offline, openai, anthropic) behind one gateway."""
