"""Models: backbone presets, pretrained weights, heads and freezing, classical classifiers, the saved-model folder."""
