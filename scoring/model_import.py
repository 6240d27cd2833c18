"""Import a folder of per-sensor model files as device bundles in the model store.

File names: ``model_<device>_<sensor>``, optionally ending ``.pkl``, ``.pickle`` (a
pickled scaler + one-class SVM pipeline, read with the restricted unpickler of
``scoring.legacy``) or ``.skops`` (a skops file of any supported detector). Ids may hold
``_``, so the name is split at the first ``_`` after ``model_``: the device is what comes
before it, the sensor everything after (``model_1_flow_rate`` is device ``1``, sensor
``flow_rate``). A device id holding ``_`` is written with ``%5F`` in its place
(``model_pump%5F7_flow_rate`` is device ``pump_7``); any character may be percent-encoded
so. Every file is accounted for: imported, refused with its reason, or (a file not named
``model_...``) reported as not a model file. A device any of whose files is refused is not
imported at all, so its current bundle stays as it was (also when the file is refused for its
name, as long as the name still tells its device: ``model_1_2.c`` keeps device 1's models);
every other device is imported. Ids follow the readings' id rule (``scoring.readings.ID_PATTERN``,
the whole name: no ``..``, no leading ``-``, no trailing newline). A symbolic link is refused:
a model folder holds the files themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from scoring.legacy import read_legacy_model

if TYPE_CHECKING:
    from scoring.detectors import DetectorModel
from scoring.model_format import MAX_MODEL_FILE_BYTES, ModelBundle, ModelFormatError, SensorModel, model_metadata, \
    versioned_bundle
from scoring.blobs import Blobs
from scoring.model_store import save_bundle
from scoring.readings import ID_PATTERN

SUFFIXES = ("", ".pkl", ".pickle", ".skops")
NAMING = ("model_<device>_<sensor>[.pkl|.pickle|.skops], split at the first _ after model_; "
          "write a _ inside the device id as %5F")


@dataclass
class ModelDir:
    """What a folder of model files holds."""

    bundles: dict[str, ModelBundle] = field(default_factory=dict)  # device -> its new bundle
    refused: dict[str, str] = field(default_factory=dict)  # file name -> why (its device is not imported)
    not_models: dict[str, str] = field(default_factory=dict)  # file name -> why it is not a model file
    devices_refused: dict[str, list[str]] = field(default_factory=dict)  # device -> its refused files


@dataclass(frozen=True)
class ModelImport:
    """What ``bscore models import`` did: the devices whose bundles became current (version and
    sensor models), the refused files with why, the devices kept as they were because of them,
    and the files that are not model files."""

    directory: str
    versions: dict[str, str]  # device -> the version now current
    sensor_models: dict[str, int]  # device -> sensor models in that version
    refused: dict[str, str]
    devices_refused: dict[str, list[str]]
    not_models: dict[str, str]

    @classmethod
    def of(cls, found: ModelDir, directory: str | Path) -> "ModelImport":
        return cls(str(directory), {d: b.version for d, b in sorted(found.bundles.items())},
                   {d: len(b.models) for d, b in sorted(found.bundles.items())}, dict(found.refused),
                   {d: sorted(files) for d, files in found.devices_refused.items()}, dict(found.not_models))


def parse_model_file_name(name: str) -> tuple[str, str, str]:
    """``(device, sensor, suffix)`` of a model file's name.

    Raises
    ------
    ValueError
        When the name cannot be read unambiguously, naming the fix.

    Examples
    --------
    >>> parse_model_file_name("model_1_flow_rate.pkl")
    ('1', 'flow_rate', '.pkl')
    >>> parse_model_file_name("model_pump%5F7_3")
    ('pump_7', '3', '')
    """
    stem, suffix = name, ""
    for candidate in SUFFIXES[1:]:
        if name.lower().endswith(candidate):
            stem, suffix = name[: -len(candidate)], candidate
            break
    rest = stem[len("model_"):]
    device, underscore, sensor = rest.partition("_")
    if not underscore or not device or not sensor:
        raise ValueError(f"cannot tell device from sensor; name it {NAMING}")
    if "." in sensor and not suffix and sensor.rsplit(".", 1)[-1].isalpha():
        # Ids may hold '.', so "model_1_flow.rate" could be sensor "flow.rate" or a ".rate" file.
        raise ValueError(f"ambiguous: is .{sensor.rsplit('.', 1)[-1]} part of the sensor id or a file type? "
                         "Add .pkl or .skops to the name (model_<device>_<sensor>.pkl), or write the dot as %2E")
    device, sensor = unquote(device, errors="strict"), unquote(sensor, errors="strict")
    for what, value in (("device", device), ("sensor", sensor)):
        if not ID_PATTERN.fullmatch(value):
            raise ValueError(f"{what} id {value!r} breaks the id rule (1-64 of letters, digits, . _ : -, "
                             "starting with a letter or digit)")
    return device, sensor, suffix


def device_of_refused_name(name: str) -> str | None:
    """The device a model file's name still tells when ``parse_model_file_name`` refuses it
    (``model_1_2.c`` is device 1's), so that device keeps its current bundle; ``None`` when
    the name tells no valid device id."""
    device, underscore, _ = name[len("model_"):].partition("_")
    device = unquote(device, errors="replace")
    return device if underscore and ID_PATTERN.fullmatch(device) else None


def read_model_file(path: Path, suffix: str | None = None):
    """The safe form of one model file: a ``SensorModel`` or a ``DetectorModel``.

    ``suffix`` (as ``parse_model_file_name`` gives it) says which; by default the path's.
    """
    if (path.suffix if suffix is None else suffix).lower() != ".skops":
        return read_legacy_model(path)
    size = path.stat().st_size
    if size > MAX_MODEL_FILE_BYTES:
        raise ModelFormatError(f"{path}: {size:,} bytes, over the limit of {MAX_MODEL_FILE_BYTES:,} bytes for a "
                               "model file (MAX_MODEL_FILE_BYTES)")
    # scikit-learn and skops take seconds to import: only a .skops file needs them.
    import sklearn

    from scoring.detectors import DetectorModel, load_detector, training_samples

    estimator = load_detector(path.read_bytes(), source=str(path))
    return DetectorModel(estimator, model_metadata(sklearn.__version__, training_samples(estimator),
                                                   source=path.name))


def scan_model_dir(directory: str | Path) -> ModelDir:
    """Read every file of ``directory``: one bundle per device whose files are all good.

    Parameters
    ----------
    directory : str or Path
        A folder of model files (see the module's naming rule).

    Returns
    -------
    ModelDir
        The bundles (version ``imported-<UTC time>-<content hash>``), the refused files
        with their reasons (a file that is not a readable, valid model, a name that cannot
        be read, two files for one device and sensor), and the files not named ``model_...``.

    Raises
    ------
    ValueError
        When ``directory`` is not a folder.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a folder")
    found = ModelDir()
    models: dict[str, dict[str, SensorModel | DetectorModel]] = {}
    sources: dict[tuple[str, str], Path] = {}

    def refuse(path: Path, reason: str, device: str | None = None) -> None:
        found.refused[path.name] = reason if reason.startswith(str(path)) else f"{path}: {reason}"
        if device is not None:
            found.devices_refused.setdefault(device, []).append(path.name)

    for path in sorted(directory.iterdir()):
        if not path.name.startswith("model_"):
            found.not_models[path.name] = "a folder" if path.is_dir() else "not named model_<device>_<sensor>"
            continue
        try:
            device, sensor, suffix = parse_model_file_name(path.name)
        except ValueError as exc:
            refuse(path, str(exc), device_of_refused_name(path.name))
            continue
        if path.is_symlink():  # it could point anywhere on the host
            refuse(path, "a symbolic link (to another file); copy the file itself into the folder", device)
            continue
        if not path.is_file():
            refuse(path, "not a file", device)
            continue
        earlier = sources.get((device, sensor))
        if earlier is not None:
            refuse(path, f"device {device} sensor {sensor} is also in {earlier.name}; keep one of them", device)
            if earlier.name not in found.refused:
                refuse(earlier, f"device {device} sensor {sensor} is also in {path.name}; keep one of them", device)
            continue
        sources[(device, sensor)] = path
        try:
            models.setdefault(device, {})[sensor] = read_model_file(path, suffix)
        except ValueError as exc:  # LegacyModelError, ModelFormatError: the message names the file
            refuse(path, str(exc), device)
    for device, sensors in models.items():
        if device not in found.devices_refused:
            found.bundles[device] = versioned_bundle(device, sensors, {"imported_from": str(directory)},
                                                     prefix="imported-")
    return found


def read_model_dir(directory: str | Path) -> dict[str, ModelBundle]:
    """One bundle per device from the model files in ``directory``, all or nothing.

    Raises
    ------
    ValueError
        When the folder holds no model file, or any file named ``model_...`` is refused,
        naming every such file and why.
    """
    found = scan_model_dir(directory)
    if found.refused:
        raise ValueError("; ".join(found.refused.values()))
    if not found.bundles:
        raise ValueError(f"no model_<device>_<sensor> files in {directory}")
    return found.bundles


def import_model_dir(blobs: Blobs, directory: str | Path) -> ModelDir:
    """Scan ``directory`` (``scan_model_dir``) and store each good device's bundle as its current version."""
    found = scan_model_dir(directory)
    for bundle in found.bundles.values():
        save_bundle(blobs, bundle, make_current=True)
    return found
