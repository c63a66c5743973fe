"""Models: datasets, training, search, export, contributions."""
