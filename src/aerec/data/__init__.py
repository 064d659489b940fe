"""Data layer: readers for Netflix Prize and MovieLens files, the synthetic generator, the
prepared (memory-mappable) dataset store, statistics and splits. Knows nothing of torch."""
