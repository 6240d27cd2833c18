"""Where shards are scored: a local process pool by default, Azure ML command jobs on Azure."""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor, as_completed

import dagster as dg

from scoring.engine import ShardScores, score_shard
from scoring.shards import Shard


def _score(shard: Shard) -> ShardScores:
    return score_shard(shard.rows, shard.bundles)


class ComputeBackend(dg.ConfigurableResource, ABC):
    """Scores shards, each holding many devices' models."""

    devices_per_shard: int = 500

    @abstractmethod
    def score_shards(self, context: dg.AssetExecutionContext, shards: list[Shard]) -> list[ShardScores]:
        """Score every shard; results in the order of ``shards``."""

    @abstractmethod
    def describe(self) -> str: ...


class LocalComputeBackend(ComputeBackend):
    """A pool of ``max_workers`` processes; a single shard is scored in-process."""

    max_workers: int = 2

    def score_shards(self, context, shards):
        results: list[ShardScores | None] = [None] * len(shards)
        if len(shards) <= 1 or self.max_workers <= 1:
            for i, shard in enumerate(shards):
                results[i] = _score(shard)
                context.log.info(f"{shard.label}: {len(shard.rows)} rows scored ({i + 1}/{len(shards)} shards)")
            return results
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.max_workers, mp_context=ctx) as pool:
            futures = {pool.submit(_score, shard): i for i, shard in enumerate(shards)}
            for done, future in enumerate(as_completed(futures), start=1):
                i = futures[future]
                results[i] = future.result()
                context.log.info(f"{shards[i].label}: {len(shards[i].rows)} rows scored ({done}/{len(shards)} shards)")
        return results

    def describe(self) -> str:
        return f"local process pool ({self.max_workers} workers)"
