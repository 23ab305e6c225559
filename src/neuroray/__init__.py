"""neuroray: neuro-ML experiments at scale on Ray (data shards, Lightning trainables, Tune ablations)."""

__version__ = "0.1.0"
