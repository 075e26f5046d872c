"""The embedded local model: where its weights come from, its server, slots and dispatcher."""
