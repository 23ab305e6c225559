"""Raw EEG recordings → EEG window shard sets: MNE readers, BIDS/HBN discovery, steps, challenge targets."""
