"""Pure batch-scoring library: readings, windows, model bundles, training and the scorer.

Nothing here imports Dagster, so a remote compute node needs only this package, numpy,
pandas and pyarrow to score a shard.
"""
