"""Where every domain's data lies in blob storage: every key bscore reads or writes, and what
a key's name says, in one module (string functions only; no I/O).

- ``raw/<hour>/part-<accepted>-<digest>-<first>-<last>-<rows>.parquet``: readings the drain
  accepted, named by content, time span (seconds after the hour) and rows (older names lack
  the acceptance sequence, or the span too).
- ``deadletter/<digest>.parquet``: refused events with their reasons; those taken out go to
  ``deadletter-replayed/`` or ``deadletter-exported/`` (``<batch>/<digest>.parquet``).
- ``models/<device>/<version>/{params.npz,bundle.json}`` and ``models/<device>/current.json``.
- ``predictions/<hour>/sensor=<s>/part-<first>--<last>--<run>.parquet`` and its
  ``_manifest.json`` (``scoring.prediction_layout``).
- ``verdicts/<hour>.parquet``: the hour's device verdicts.
- ``asa-census/<hour>/``: what Stream Analytics accepted per hour and device, when it aggregates.

Hours are written ``%Y-%m-%dT%H`` (``BLOB_HOUR_FORMAT``).
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from scoring.time_units import HOUR_SECONDS

BLOB_HOUR_FORMAT = "%Y-%m-%dT%H"
RAW_PREFIX = "raw/"
DEADLETTER_PREFIX = "deadletter/"
DEADLETTER_REPLAYED_PREFIX = "deadletter-replayed/"
DEADLETTER_EXPORTED_PREFIX = "deadletter-exported/"
ASA_CENSUS_PREFIX = "asa-census/"
MODELS_PREFIX = "models/"
PREDICTIONS_PREFIX = "predictions/"
VERDICTS_PREFIX = "verdicts/"
MANIFEST = "_manifest.json"
BUNDLE_FILES = ("params.npz", "bundle.json")  # written in this order: the metadata commits the bundle


def hour_folder(hour) -> str:
    return f"{pd.Timestamp(hour):{BLOB_HOUR_FORMAT}}"


# raw readings ------------------------------------------------------------------------------

def raw_prefix(hour) -> str:
    return f"{RAW_PREFIX}{hour_folder(hour)}/"


class PartLayout(NamedTuple):
    """What a raw part's name says about it: its rows, and the whole seconds after the hour's
    start that its readings' times lie within, ``[first_second, last_second]``."""

    rows: int
    first_second: int
    last_second: int


def raw_part_key(hour, digest: str, rows: int, span: tuple[int, int] | None = None,
                 accepted: int | None = None) -> str:
    """A raw part named by its content (and row count), so the drain can tell the same readings
    delivered again from new ones.

    ``span`` (``bscore_assets.storage.part_span``) puts the readings' time span in the name, so
    that readers can choose the parts of part of an hour from the listing alone; the row count
    stays last. ``accepted`` (with a span; ``bscore_assets.storage.acceptance_sequence``) puts
    first the order in which the drain accepted the part, which readers follow so that the
    first accepted value of a re-sent reading wins.
    """
    if span is None:
        return f"{raw_prefix(hour)}part-{digest}-{rows}.parquet"
    first, last = span
    if not 0 <= first <= last <= HOUR_SECONDS:
        raise ValueError(f"span {span} of a raw part lies outside its hour")
    if accepted is not None:
        return f"{raw_prefix(hour)}part-{accepted:020d}-{digest}-{first}-{last}-{rows}.parquet"
    return f"{raw_prefix(hour)}part-{digest}-{first}-{last}-{rows}.parquet"


def _name_fields(key: str) -> list[str]:
    return key.rsplit("/", 1)[-1].removesuffix(".parquet").split("-")


def part_digest(key: str) -> str:
    """The content digest a raw part's name records."""
    fields = _name_fields(key)
    return fields[2] if len(fields) == 6 else fields[1]


def acceptance_order(key: str) -> tuple[int, str]:
    """A raw part's place in the order the drain accepted parts: parts named before names
    carried their acceptance sequence come first (they were accepted before), in name order."""
    fields = _name_fields(key)
    return (int(fields[1]), key) if len(fields) == 6 else (-1, key)


def part_layout(key: str) -> PartLayout:
    """Rows and time span a raw part's name records; a name without a span (written before
    names carried one) spans the whole hour."""
    fields = _name_fields(key)
    if len(fields) == 6:  # part-<accepted>-<digest>-<first>-<last>-<rows>
        return PartLayout(int(fields[5]), int(fields[3]), int(fields[4]))
    if len(fields) == 5:  # part-<digest>-<first>-<last>-<rows>
        return PartLayout(int(fields[4]), int(fields[2]), int(fields[3]))
    return PartLayout(int(fields[-1]), 0, HOUR_SECONDS)


def part_rows(key: str) -> int:
    """The row count a raw part's name records."""
    return part_layout(key).rows


# dead letters -------------------------------------------------------------------------------

def deadletter_key(digest: str) -> str:
    return f"{DEADLETTER_PREFIX}{digest}.parquet"


# models -------------------------------------------------------------------------------------

def model_version_prefix(device: str, version: str) -> str:
    """The folder of one version of a device's bundle (``BUNDLE_FILES``)."""
    return f"{MODELS_PREFIX}{device}/{version}"


def current_version_key(device: str) -> str:
    """The blob naming the device's current version."""
    return f"{MODELS_PREFIX}{device}/current.json"


def device_of_current_key(key: str) -> str | None:
    """The device whose ``current.json`` ``key`` is, or None when it is another key."""
    parts = key.split("/")
    if len(parts) == 3 and f"{parts[0]}/" == MODELS_PREFIX and parts[2] == "current.json":
        return parts[1]
    return None


def asa_census_prefix(hour) -> str:
    """Where Stream Analytics writes the census of ``hour``."""
    return f"{ASA_CENSUS_PREFIX}{hour_folder(hour)}/"


# predictions and verdicts -------------------------------------------------------------------

def prediction_hour_prefix(hour) -> str:
    return f"{PREDICTIONS_PREFIX}{hour_folder(hour)}/"


def prediction_prefix(hour, sensor: str) -> str:
    """The folder of the (hour, sensor) partition's parts and manifest."""
    return f"{prediction_hour_prefix(hour)}sensor={sensor}/"


def prediction_part_key(hour, sensor: str, first_device: str, last_device: str, run: str) -> str:
    """The part of run ``run``'s shard holding devices ``first_device .. last_device`` (device ids
    are validated names without ``/``; ``--`` separates them since ids may hold ``-``)."""
    return f"{prediction_prefix(hour, sensor)}part-{first_device}--{last_device}--{run}.parquet"


def prediction_manifest_key(hour, sensor: str) -> str:
    return prediction_prefix(hour, sensor) + MANIFEST


def legacy_prediction_key(hour, sensor: str) -> str:
    """The one-file layout of a partition before parts and manifests."""
    return f"{prediction_hour_prefix(hour)}sensor={sensor}.parquet"


def sensor_of_manifest_key(hour, key: str) -> str | None:
    """The sensor whose manifest ``key`` is, under the hour's predictions, or None."""
    prefix = prediction_hour_prefix(hour)
    if not (key.startswith(prefix) and key.endswith("/" + MANIFEST)):
        return None
    return key[len(prefix):].split("/", 1)[0].removeprefix("sensor=")


def verdicts_key(hour) -> str:
    """The hour's device verdicts, one Parquet file (``scoring.verdicts``)."""
    return f"{VERDICTS_PREFIX}{hour_folder(hour)}.parquet"
