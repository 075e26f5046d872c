"""The embedded local model: the catalogue of packaged models and their weights, its server,
slots and dispatcher."""
