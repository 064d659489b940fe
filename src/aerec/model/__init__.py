"""Model layer: the autoencoder family (and, in ``baselines``, simple reference predictors).

Pure math — layers, activations, outputs at requested positions. Reads no files, prints nothing.
"""

from aerec.model.autoencoder import ACTIVATIONS, AutoEncoder, dropout, hidden_widths
from aerec.model.sparse_rows import SparseRows

__all__ = ["ACTIVATIONS", "AutoEncoder", "SparseRows", "dropout", "hidden_widths"]
