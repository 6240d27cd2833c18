"""Verdicts measured against a user's labels: point-wise and event-wise figures beside baselines.

A label is a span of time on a device, or on one sensor of a device: ``device, start, end[,
sensor][, kind]``. Windows are stamped by their end (``System.Timestamp``, see
:mod:`scoring.windows`), so a span labels the windows whose timestamp ``t`` has
``start < t <= end``, the same half-open rule a window has for its readings. A label without a
sensor applies to every sensor of its device; a device window is labelled when its device or
any of its sensors is.

Figures, each computed on the same stored windows (``docs/evaluation.md`` has the definitions):

- point-wise: every window is a case (tp, fp, fn, tn, precision, recall, F1, false-alarm rate);
- event-wise: an event is a maximal run of consecutive labelled windows of one series, detected
  when one of its windows is flagged (event recall); an alarm is a maximal run of consecutive
  flagged windows, true when it overlaps a labelled window (alarm precision); the event F1
  pairs those two, the composite F1 (Garg et al. 2021) pairs event recall with point-wise
  precision, so that one alarm spanning everything does not score;
- point-adjusted (only on request: it inflates scores): a detected event counts every one of its
  windows as found;
- baselines: flagging every window, and flagging at random at the detector's own flag rate
  (expected values in closed form, not one random draw).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

LABEL_COLUMNS = ["device", "start", "end", "sensor", "kind"]
REQUIRED_LABEL_COLUMNS = ["device", "start", "end"]
MAX_LABELS = 1_000_000
MAX_FIELD_CHARS = 1_000


def read_labels(path: str | Path, max_labels: int = MAX_LABELS) -> pd.DataFrame:
    """Read a labels CSV ``device,start,end[,sensor][,kind]``.

    Parameters
    ----------
    path : str or Path
        The file. Times are ISO-8601; times without an offset are UTC, times with one are
        converted to UTC. An empty ``sensor`` labels the whole device.
    max_labels : int
        More rows than this is refused (a labels file is a list of spans, not of readings).

    Returns
    -------
    DataFrame
        ``device, start, end, sensor, kind`` (``start``/``end`` naive UTC ``datetime64[ns]``;
        ``sensor`` and ``kind`` are ``""`` when absent).

    Raises
    ------
    ValueError
        Naming the file, the line and what is wrong: a missing or unknown column, an empty
        device, a time that does not parse, an end not after its start, too many rows.

    Examples
    --------
    A file holding ``device,start,end,sensor`` then ``pump1,2026-01-01T10:00,2026-01-01T10:05,``
    labels every window of pump1 stamped in (10:00, 10:05].
    """
    path = Path(path)
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: empty file; expected a header {','.join(LABEL_COLUMNS)}")
            header = [name.strip().lower() for name in header]
            _check_header(path, header)
            for row in reader:
                if not any(field.strip() for field in row):
                    continue
                if len(rows) >= max_labels:
                    raise ValueError(f"{path}, line {reader.line_num}: more than {max_labels:,} labels; "
                                     "a labels file lists spans (device,start,end), not readings")
                if len(row) != len(header):
                    raise ValueError(f"{path}, line {reader.line_num}: {len(row)} field(s), the header has "
                                     f"{len(header)} ({','.join(header)})")
                if any(len(field) > MAX_FIELD_CHARS for field in row):
                    raise ValueError(f"{path}, line {reader.line_num}: a field longer than {MAX_FIELD_CHARS} characters")
                rows.append([field.strip() for field in row])
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV: {exc}") from None
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    for column in ("sensor", "kind"):
        if column not in frame:
            frame[column] = ""
    line = np.asarray(lines, dtype=np.int64)
    empty = (frame["device"] == "").to_numpy()
    if empty.any():
        raise ValueError(f"{path}, line {line[empty.argmax()]}: empty device")
    start = _parse_times(path, frame["start"], line, "start")
    end = _parse_times(path, frame["end"], line, "end")
    backwards = (end <= start).to_numpy()
    if backwards.any():
        i = backwards.argmax()
        raise ValueError(f"{path}, line {line[i]}: end {frame['end'].iat[i]} is not after start "
                         f"{frame['start'].iat[i]}; the span (start, end] would hold no window")
    return pd.DataFrame({"device": frame["device"].astype(str), "start": start, "end": end,
                         "sensor": frame["sensor"].astype(str), "kind": frame["kind"].astype(str)})


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED_LABEL_COLUMNS if c not in header]
    unknown = [c for c in header if c not in LABEL_COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing or unknown or repeated:
        what = "; ".join(part for part in (
            f"missing column(s) {', '.join(missing)}" if missing else "",
            f"unknown column(s) {', '.join(unknown)}" if unknown else "",
            f"repeated column(s) {', '.join(repeated)}" if repeated else "") if part)
        raise ValueError(f"{path}, line 1: {what}; expected {','.join(REQUIRED_LABEL_COLUMNS)}"
                         "[,sensor][,kind]")


def _parse_times(path: Path, text: pd.Series, line: np.ndarray, column: str) -> pd.Series:
    """ISO-8601 strings to naive UTC; the first that does not parse is named with its line."""
    times = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = times.isna().to_numpy()
    if bad.any():
        i = bad.argmax()
        raise ValueError(f"{path}, line {line[i]}: {column} {text.iat[i]!r} is not an ISO-8601 time "
                         "(e.g. 2026-01-01T10:00:00)")
    return times.dt.tz_convert(None).astype("datetime64[ns]")


def write_labels(labels: pd.DataFrame, path: str | Path) -> Path:
    """Write labels as a CSV that :func:`read_labels` reads back; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = labels.reindex(columns=LABEL_COLUMNS).fillna("")
    tmp = path.with_name(f".{path.name}.tmp")
    out.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
    tmp.replace(path)
    return path


def labels_from_flags(ts: pd.Series, device: pd.Series | str, window_seconds: int, kind: str = "",
                      sensor: str = "") -> pd.DataFrame:
    """Label spans from the readings a wide CSV's label column marks (``anomaly`` nonzero).

    Every window that holds a marked reading is labelled; consecutive labelled windows of a
    device form one span ``(end of the first - length, end of the last]``.

    Parameters
    ----------
    ts : Series
        The times of the marked readings only (naive UTC).
    device : Series or str
        Their devices.
    window_seconds : int
        The aggregation window length (``window_seconds`` of the ``pipeline`` resource; no variable sets it).
    """
    from scoring.windows import window_ends_ns

    ns = pd.to_datetime(ts).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    devices = np.broadcast_to(np.asarray(device, dtype=object), ns.shape)
    marked = pd.DataFrame({"device": devices, "end": window_ends_ns(ns, window_seconds)}).drop_duplicates()
    marked = marked.sort_values(["device", "end"], kind="stable")
    width = np.int64(window_seconds) * 1_000_000_000
    ends, names = marked["end"].to_numpy(), marked["device"].to_numpy()
    new_span = np.ones(len(marked), dtype=bool)
    new_span[1:] = (names[1:] != names[:-1]) | (ends[1:] - ends[:-1] != width)
    span = np.cumsum(new_span)
    spans = marked.groupby(span, sort=True).agg(device=("device", "first"), first=("end", "min"), last=("end", "max"))
    return pd.DataFrame({"device": spans["device"].astype(str).to_numpy(),
                         "start": (spans["first"].to_numpy() - width).astype("datetime64[ns]"),
                         "end": spans["last"].to_numpy().astype("datetime64[ns]"), "sensor": sensor, "kind": kind})


# Marking windows


def labelled_windows(windows: pd.DataFrame, labels: pd.DataFrame, per_sensor: bool = True) -> np.ndarray:
    """Whether a label covers each row of ``windows`` (``ts, device[, sensor]``).

    With ``per_sensor`` a label applies to its sensor's windows, or to every sensor's when it
    has none; without, to its device's windows whatever its sensor (device windows).
    """
    out = np.zeros(len(windows), dtype=bool)
    if windows.empty or labels.empty:
        return out
    ts = pd.to_datetime(windows["ts"]).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    spans = {device: group for device, group in labels.groupby("device", sort=False)}
    keys = ["device", "sensor"] if per_sensor else ["device"]
    for key, rows in windows.groupby(keys, sort=False).indices.items():
        device = key[0] if isinstance(key, tuple) else key
        group = spans.get(device)
        if group is None:
            continue
        if per_sensor:
            group = group[(group["sensor"] == "") | (group["sensor"] == key[1])]
        if group.empty:
            continue
        order = np.argsort(ts[rows], kind="stable")
        times = ts[rows][order]
        starts = group["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        ends = group["end"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        # (start, end]: the first window after start up to the first window after end.
        depth = np.zeros(len(times) + 1, dtype=np.int64)
        np.add.at(depth, np.searchsorted(times, starts, side="right"), 1)
        np.add.at(depth, np.searchsorted(times, ends, side="right"), -1)
        out[rows[order]] = np.cumsum(depth[:-1]) > 0
    return out


def device_verdicts(predictions: pd.DataFrame) -> pd.DataFrame:
    """``ts, device, is_anomaly`` per device window: anomalous when any of its sensors is flagged."""
    return (predictions.groupby(["device", "ts"], sort=True, observed=True)["is_anomaly"].any()
            .reset_index()[["ts", "device", "is_anomaly"]])


# Figures


@dataclass(frozen=True)
class Evaluation:
    """Figures per sensor and per device, each table with an ``overall`` row last.

    ``sensors`` rows are sensor ids (summed over devices, sensor windows); ``devices`` rows are
    devices (device windows). Columns: see :func:`evaluate`.
    """

    sensors: pd.DataFrame
    devices: pd.DataFrame
    unmatched_labels: int


OVERALL = "overall"


def evaluate(predictions: pd.DataFrame, labels: pd.DataFrame, device_predictions: pd.DataFrame | None = None,
             point_adjusted: bool = False) -> Evaluation:
    """Score stored verdicts against labels at sensor and device level.

    Parameters
    ----------
    predictions : DataFrame
        ``ts, device, sensor, is_anomaly``: one row per sensor window.
    labels : DataFrame
        As :func:`read_labels` returns.
    device_predictions : DataFrame, optional
        ``ts, device, is_anomaly`` per device window; by default a device window is anomalous
        when any of its sensors is flagged.
    point_adjusted : bool
        Also compute point-adjusted precision, recall and F1 (columns ``pa_*``).

    Returns
    -------
    Evaluation
        Tables with columns ``windows, labelled, flagged, tp, fp, fn, tn, precision, recall, f1,
        false_alarm_rate, events, events_detected, event_recall, alarms, true_alarms,
        alarm_precision, event_f1, composite_f1`` (event recall with point-wise precision), the
        flag-everything baseline (``all_precision``, ``all_f1``, ``all_alarm_precision``,
        ``all_event_f1``, ``all_composite_f1``; its recall and event recall are 1, its
        false-alarm rate 1), the random baseline at the row's flag rate (``random_precision,
        random_recall, random_f1, random_false_alarm_rate, random_event_recall,
        random_alarm_precision, random_event_f1, random_composite_f1``) and, when asked, ``pa_precision, pa_recall,
        pa_f1``. A ratio with a zero denominator is NaN.
    """
    predictions = predictions[["ts", "device", "sensor", "is_anomaly"]]
    sensor_frame = _window_frame(predictions, labels, ["device", "sensor"], per_sensor=True)
    if device_predictions is None:
        device_predictions = device_verdicts(predictions)
    device_frame = _window_frame(device_predictions[["ts", "device", "is_anomaly"]], labels, ["device"],
                                 per_sensor=False)
    covered = _labels_covering(labels, predictions)
    return Evaluation(sensors=_summarise(sensor_frame, "sensor", point_adjusted),
                      devices=_summarise(device_frame, "device", point_adjusted),
                      unmatched_labels=int(len(labels) - covered))


def _labels_covering(labels: pd.DataFrame, predictions: pd.DataFrame) -> int:
    """How many labels cover at least one stored window of their device (and sensor)."""
    if labels.empty or predictions.empty:
        return 0
    count = 0
    for device, group in labels.groupby("device", sort=False):
        rows = predictions[predictions["device"] == device]
        if rows.empty:
            continue
        for sensor, spans in group.groupby("sensor", sort=False):
            times = np.unique(pd.to_datetime((rows if sensor == "" else rows[rows["sensor"] == sensor])["ts"])
                              .to_numpy(dtype="datetime64[ns]").astype(np.int64))
            starts = spans["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
            ends = spans["end"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
            count += int((np.searchsorted(times, ends, "right") > np.searchsorted(times, starts, "right")).sum())
    return count


def _window_frame(windows: pd.DataFrame, labels: pd.DataFrame, series: list[str], per_sensor: bool) -> pd.DataFrame:
    """Windows sorted by series and time, with what every figure needs per window."""
    frame = windows.sort_values(series + ["ts"], kind="stable").reset_index(drop=True)
    frame["labelled"] = labelled_windows(frame, labels, per_sensor)
    flagged = frame["is_anomaly"].astype(bool).to_numpy()
    labelled = frame["labelled"].to_numpy()
    frame["flagged"] = flagged
    code = frame.groupby(series, sort=False).ngroup().to_numpy()
    n = len(frame)
    first = np.ones(n, dtype=bool)
    first[1:] = code[1:] != code[:-1]
    last = np.ones(n, dtype=bool)
    last[:-1] = code[1:] != code[:-1]
    frame["series_last"] = last
    # Events: maximal runs of labelled windows of one series; alarms: of flagged ones.
    event_start = labelled & (first | ~np.roll(labelled, 1))
    frame["event"] = np.where(labelled, np.cumsum(event_start) - 1, -1)
    alarm_start = flagged & (first | ~np.roll(flagged, 1))
    frame["alarm"] = np.where(flagged, np.cumsum(alarm_start) - 1, -1)
    # For the random baseline's alarms: where each unlabelled stretch starts, and whether a
    # labelled window precedes it (a run reaching back into it would overlap a label).
    stretch_start = ~labelled & (first | np.roll(labelled, 1))
    start_index = np.maximum.accumulate(np.where(stretch_start, np.arange(n), 0))
    frame["stretch_offset"] = np.where(labelled, -1, np.arange(n) - start_index)
    frame["after_label"] = ~labelled & ~first[start_index]
    return frame


def _summarise(frame: pd.DataFrame, key: str, point_adjusted: bool) -> pd.DataFrame:
    """One row per ``key`` value, then the overall row."""
    # Integer codes: grouping a million rows on strings costs several times more.
    codes, names = pd.factorize(frame[key].astype(str).to_numpy(), sort=True)
    per_key = _figures(frame, codes, point_adjusted)
    per_key.index = names[per_key.index.to_numpy()]
    overall = _figures(frame, np.zeros(len(frame), dtype=np.int64), point_adjusted)
    overall.index = [OVERALL] * len(overall)
    table = pd.concat([per_key, overall])
    table.index.name = key
    return table


def _figures(frame: pd.DataFrame, key: np.ndarray, point_adjusted: bool) -> pd.DataFrame:
    flagged, labelled = frame["flagged"].to_numpy(), frame["labelled"].to_numpy()
    cases = pd.DataFrame({"key": key, "tp": flagged & labelled, "fp": flagged & ~labelled,
                          "fn": ~flagged & labelled, "tn": ~flagged & ~labelled})
    t = cases.groupby("key", sort=True).sum().astype(np.int64)
    t.insert(0, "windows", t[["tp", "fp", "fn", "tn"]].sum(axis=1))
    t.insert(1, "labelled", t["tp"] + t["fn"])
    t.insert(2, "flagged", t["tp"] + t["fp"])
    normal = t["fp"] + t["tn"]
    t["precision"] = _ratio(t["tp"], t["flagged"])
    t["recall"] = _ratio(t["tp"], t["labelled"])
    t["f1"] = _f1(t["precision"], t["recall"])
    t["false_alarm_rate"] = _ratio(t["fp"], normal)

    in_event = frame["event"].to_numpy() >= 0
    events = pd.DataFrame({"key": key[in_event], "event": frame["event"].to_numpy()[in_event],
                           "flagged": flagged[in_event]}).groupby(["key", "event"], sort=False)["flagged"].agg(["any", "size"])
    events = events.reset_index()
    t["events"] = events.groupby("key").size().reindex(t.index, fill_value=0)
    t["events_detected"] = events.groupby("key")["any"].sum().reindex(t.index, fill_value=0).astype(np.int64)
    t["event_recall"] = _ratio(t["events_detected"], t["events"])
    in_alarm = frame["alarm"].to_numpy() >= 0
    alarms = pd.DataFrame({"key": key[in_alarm], "alarm": frame["alarm"].to_numpy()[in_alarm],
                           "labelled": labelled[in_alarm]}).groupby(["key", "alarm"], sort=False)["labelled"].any()
    alarms = alarms.reset_index()
    t["alarms"] = alarms.groupby("key").size().reindex(t.index, fill_value=0)
    t["true_alarms"] = alarms.groupby("key")["labelled"].sum().reindex(t.index, fill_value=0).astype(np.int64)
    t["alarm_precision"] = _ratio(t["true_alarms"], t["alarms"])
    t["event_f1"] = _f1(t["alarm_precision"], t["event_recall"])
    # Garg et al. (2021): event recall with point-wise precision; long alarms gain nothing.
    t["composite_f1"] = _f1(t["precision"], t["event_recall"])

    # Flag everything: every window is a case found; each series is one alarm, true when the
    # series holds a label.
    prevalence = _ratio(t["labelled"], t["windows"])
    t["all_precision"] = prevalence
    t["all_f1"] = _f1(prevalence, pd.Series(1.0, index=t.index).where(t["labelled"] > 0, np.nan))
    series_first = np.concatenate([[True], frame["series_last"].to_numpy()[:-1]]) if len(frame) else np.zeros(0, bool)
    series_id = np.cumsum(series_first)
    series = pd.DataFrame({"key": key, "series": series_id, "labelled": labelled}).groupby(["key", "series"])["labelled"].any()
    series = series.reset_index()
    all_alarms = series.groupby("key").size().reindex(t.index, fill_value=0)
    all_true = series.groupby("key")["labelled"].sum().reindex(t.index, fill_value=0)
    t["all_alarm_precision"] = _ratio(all_true, all_alarms)
    all_event_recall = pd.Series(1.0, index=t.index).where(t["events"] > 0, np.nan)
    t["all_event_f1"] = _f1(t["all_alarm_precision"], all_event_recall)
    t["all_composite_f1"] = _f1(prevalence, all_event_recall)

    # Random flags, each window independently with the row's flag rate q (expected values).
    q = _ratio(t["flagged"], t["windows"]).fillna(0.0)
    t["random_precision"] = prevalence.where(q > 0, np.nan)
    t["random_recall"] = q.where(t["labelled"] > 0, np.nan)
    t["random_f1"] = _f1(t["random_precision"], t["random_recall"])
    t["random_false_alarm_rate"] = q.where(normal > 0, np.nan)
    events["q"] = q.reindex(events["key"]).to_numpy()
    events["p_detected"] = 1.0 - (1.0 - events["q"]) ** events["size"]
    t["random_event_recall"] = _ratio(events.groupby("key")["p_detected"].sum().reindex(t.index, fill_value=0.0),
                                      t["events"])
    # A run of flags is counted at its last window i: P = q * P(next not flagged). It is false
    # when it started inside i's unlabelled stretch: given i flagged, not every window from the
    # labelled one before the stretch up to i - 1 flagged, P = 1 - q ** (offset + 1).
    qw = q.reindex(key).to_numpy()
    ends = qw * np.where(frame["series_last"].to_numpy(), 1.0, 1.0 - qw)
    offset = frame["stretch_offset"].to_numpy()
    contained = np.where(labelled, 0.0,
                         1.0 - np.where(frame["after_label"].to_numpy(), qw ** (np.maximum(offset, 0) + 1), 0.0))
    runs = pd.DataFrame({"key": key, "runs": ends, "false": ends * contained}).groupby("key").sum()
    t["random_alarm_precision"] = _ratio(runs["runs"] - runs["false"], runs["runs"]).reindex(t.index)
    t["random_event_f1"] = _f1(t["random_alarm_precision"], t["random_event_recall"])
    t["random_composite_f1"] = _f1(t["random_precision"], t["random_event_recall"])

    if point_adjusted:
        detected = events.set_index("event")["any"] if len(events) else pd.Series(dtype=bool)
        event = frame["event"].to_numpy()
        found = flagged.copy()
        found[in_event] |= detected.reindex(event[in_event]).fillna(False).to_numpy(dtype=bool)
        pa = pd.DataFrame({"key": key, "tp": found & labelled, "fp": found & ~labelled}).groupby("key").sum()
        t["pa_precision"] = _ratio(pa["tp"], pa["tp"] + pa["fp"])
        t["pa_recall"] = _ratio(pa["tp"], t["labelled"])
        t["pa_f1"] = _f1(t["pa_precision"], t["pa_recall"])
    return t


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    num, den = num.astype(float), den.astype(float)
    return (num / den.where(den > 0, np.nan)).astype(float)


def _f1(precision: pd.Series, recall: pd.Series) -> pd.Series:
    total = precision + recall
    return (2 * precision * recall / total.where(total > 0, np.nan)).where(~(total == 0), 0.0)
