"""Which sensor ids belong to the fleet: the rules that keep junk ids from becoming partitions.

Every sensor id becomes a ``sensors`` partition, and so a prediction file of every hour
scored, so an id is admitted only when it is declared (``BSCORE_SENSORS``, an allow-list)
or, without an allow-list, once it is seen from enough devices
(``BSCORE_SENSOR_MIN_DEVICES``, capped at the fleet's size so that a fleet of one device
admits its own sensors), or when a device sending it sends few sensor ids in all (at most
``BSCORE_DEVICE_MAX_SENSORS``): a fleet of device types, each with its own sensors, is scored
whole, while a device sending hundreds of junk ids gets none of its own ids admitted, and each
held-back id is named with its reason. With an allow-list, readings of other sensors are dead-lettered
with the reason ``undeclared_sensor_reason`` gives. Pure functions: no I/O, no Dagster.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_SENSOR_MIN_DEVICES = 2
DEFAULT_DEVICE_MAX_SENSORS = 64


def parse_sensor_list(text: str | None) -> tuple[str, ...]:
    """The sensor ids of a comma-separated allow-list (``BSCORE_SENSORS``); empty: no allow-list.

    >>> parse_sensor_list(" 1, 2,flow_rate ,")
    ('1', '2', 'flow_rate')
    """
    return tuple(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))


def undeclared_sensor_reason(sensor: str, declared: Collection[str]) -> str | None:
    """Why a reading of ``sensor`` is refused, or ``None`` when it is admitted.

    Parameters
    ----------
    sensor : str
        The reading's sensor id.
    declared : collection of str
        The allow-list (``Settings.sensors``); empty means no allow-list, and every sensor
        is admitted here (the device threshold then decides about partitions).

    Examples
    --------
    >>> undeclared_sensor_reason("junk-17", ("1", "2"))
    "undeclared sensor 'junk-17': not in BSCORE_SENSORS (1, 2)"
    >>> undeclared_sensor_reason("1", ("1", "2")) is None
    True
    """
    if not declared or sensor in declared:
        return None
    listed = sorted(declared)
    shown = ", ".join(listed[:10]) + (f", ... ({len(listed)} in all)" if len(listed) > 10 else "")
    return f"undeclared sensor {sensor!r}: not in BSCORE_SENSORS ({shown})"


def undeclared_sensor_mask(sensors, declared: Collection[str]) -> np.ndarray:
    """``True`` for each sensor id (a column: pandas, numpy or Arrow) that ``undeclared_sensor_reason``
    refuses; vectorized."""
    if not declared:
        return np.zeros(len(sensors), dtype=bool)
    if isinstance(sensors, (pa.Array, pa.ChunkedArray)):  # no Python string per reading
        known = pc.is_in(sensors, value_set=pa.array(list(declared), pa.string()))
        return ~known.to_numpy(zero_copy_only=False)
    sensors = pd.Series(sensors, copy=False)
    return ~sensors.isin(list(declared)).to_numpy()


def admitted_sensors(devices_per_sensor: Mapping[str, int], fleet_size: int,
                     min_devices: int = DEFAULT_SENSOR_MIN_DEVICES,
                     declared: Collection[str] = (),
                     fewest_ids_of_a_sender: Mapping[str, int] | None = None,
                     max_device_sensors: int = DEFAULT_DEVICE_MAX_SENSORS) -> tuple[list[str], dict[str, str]]:
    """Split the sensors seen into those that may become partitions and those held back.

    Parameters
    ----------
    devices_per_sensor : mapping
        Sensor id to how many devices have sent it.
    fleet_size : int
        How many devices have sent anything.
    min_devices : int
        Devices that must have sent a sensor before it is admitted; capped at
        ``fleet_size``, so a one-device install admits its sensors.
    declared : collection of str
        The allow-list; when given, exactly the declared sensors are admitted.
    fewest_ids_of_a_sender : mapping, optional
        Sensor id to the fewest sensor ids that one of the devices sending it sends in all.
        A sensor seen from too few devices is still admitted when that number is at most
        ``max_device_sensors`` (a real sensor of a device type of its own); a device
        beyond the bound is sending junk ids, and its own ids stay held back.
    max_device_sensors : int
        The bound above (``BSCORE_DEVICE_MAX_SENSORS``).

    Returns
    -------
    (list of str, dict)
        The admitted sensors (sorted), and ``{sensor: reason}`` for those held back.
    """
    admitted, held = [], {}
    needed = max(1, min(int(min_devices), int(fleet_size)))
    for sensor, count in sorted(devices_per_sensor.items()):
        if declared:
            reason = undeclared_sensor_reason(sensor, declared)
        elif count < needed and fewest_ids_of_a_sender is None:
            reason = (f"sensor {sensor!r} seen from {count} device(s), fewer than {needed} "
                      "(BSCORE_SENSOR_MIN_DEVICES; or declare it in BSCORE_SENSORS)")
        elif count < needed and fewest_ids_of_a_sender.get(sensor, max_device_sensors + 1) > max_device_sensors:
            reason = (f"sensor {sensor!r} seen from {count} device(s), fewer than {needed} "
                      f"(BSCORE_SENSOR_MIN_DEVICES), and every device sending it sends "
                      f"{fewest_ids_of_a_sender.get(sensor, max_device_sensors + 1)} sensor ids or more, more than "
                      f"{max_device_sensors} (BSCORE_DEVICE_MAX_SENSORS); declare it in BSCORE_SENSORS to score it")
        else:
            reason = None
        if reason is None:
            admitted.append(sensor)
        else:
            held[sensor] = reason
    return admitted, held
