"""`neuroray generate`: pictures made from a trained checkpoint of a finished run (no Ray)."""
