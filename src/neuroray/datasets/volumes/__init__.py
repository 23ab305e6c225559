"""Volumes: Neurosynth peak coordinates → per-study MNI152 maps; folders of NIfTI maps; synthetic volumes."""
