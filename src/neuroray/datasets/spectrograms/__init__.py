"""LFP and RF IQ recordings → spectrogram shard sets (``neuroray prepare spectrograms``).

Input layouts, baseline normalization and features are documented in :mod:`.lfp` and :mod:`.iq`.
"""
