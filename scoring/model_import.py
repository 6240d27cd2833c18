"""Import a folder of per-sensor model files as device bundles in the model store.

Files are named ``model_<device>_<sensor>`` (the reference's layout; the sensor is the
part after the last underscore): a pickled scaler + one-class SVM pipeline, read with the
restricted unpickler of ``scoring.legacy``, or, with a ``.skops`` suffix, a skops file
of any supported detector. Each device's models become one bundle, versioned by import
time and content, registered as the device's current version.
"""

from __future__ import annotations

import re
from pathlib import Path

import sklearn

from scoring.detectors import DetectorModel, load_detector, training_samples
from scoring.legacy import read_legacy_model
from scoring.model_format import ModelBundle, SensorModel, model_metadata, versioned_bundle
from scoring.model_store import Blobs, save_bundle

MODEL_FILE = re.compile(r"^model_(?P<device>.+)_(?P<sensor>[^_.]+)(\.skops)?$")


def read_model_file(path: Path):
    """The safe form of one model file: a ``SensorModel`` or a ``DetectorModel``."""
    if path.suffix != ".skops":
        return read_legacy_model(path)
    estimator = load_detector(path.read_bytes(), source=str(path))
    return DetectorModel(estimator, model_metadata(sklearn.__version__, training_samples(estimator),
                                                   source=path.name))


def read_model_dir(directory: str | Path) -> dict[str, ModelBundle]:
    """One bundle per device from the model files in ``directory``.

    Parameters
    ----------
    directory : str or Path
        A folder of ``model_<device>_<sensor>`` files; other files are ignored.

    Returns
    -------
    dict
        Device id to its new bundle (version ``imported-<UTC time>-<content hash>``).

    Raises
    ------
    ValueError
        When the folder holds no model file, or a file is refused (``LegacyModelError``,
        ``ModelFormatError``), naming the file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a folder")
    models: dict[str, dict[str, SensorModel | DetectorModel]] = {}
    for path in sorted(directory.iterdir()):
        match = MODEL_FILE.match(path.name)
        if match and path.is_file():
            models.setdefault(match["device"], {})[match["sensor"]] = read_model_file(path)
    if not models:
        raise ValueError(f"no model_<device>_<sensor> files in {directory}")
    return {device: versioned_bundle(device, sensors, {"imported_from": str(directory)}, prefix="imported-")
            for device, sensors in models.items()}


def import_model_dir(blobs: Blobs, directory: str | Path) -> dict[str, ModelBundle]:
    """Read ``directory`` (``read_model_dir``) and store each bundle as its device's current version."""
    bundles = read_model_dir(directory)
    for bundle in bundles.values():
        save_bundle(blobs, bundle, make_current=True)
    return bundles
