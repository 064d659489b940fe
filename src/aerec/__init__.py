"""aerec: an autoencoder movie recommender for Netflix Prize-style rating data."""

__version__ = "0.1.0"
