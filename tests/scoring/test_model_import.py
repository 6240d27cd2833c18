"""Importing a folder of model files: library and ``bscore models import``."""

import pickle

import numpy as np
import pytest
import skops.io as sio
from click.testing import CliRunner
from sklearn.neighbors import LocalOutlierFactor

from bscore_assets.cli import main
from bscore_assets.operations import local_instance
from bscore_assets.settings import Settings
from resources.blob import LocalBlobStore
from scoring.detectors import DetectorModel
from scoring.model_format import SensorModel
from scoring.model_import import read_model_dir
from scoring.model_store import current_version, load_current_bundles


def test_read_model_dir_builds_one_bundle_per_device(reference_dir):
    bundles = read_model_dir(reference_dir)  # sensor_data.csv and README.md are not model files

    assert sorted(bundles) == ["1", "2", "3"]
    assert all(sorted(bundles[d].models) == ["1", "2", "3", "4", "5"] for d in bundles)
    assert all(isinstance(m, SensorModel) for b in bundles.values() for m in b.models.values())
    assert bundles["1"].version.startswith("imported-") and bundles["1"].version != bundles["2"].version


def test_skops_detector_files_are_imported(tmp_path):
    lof = LocalOutlierFactor(n_neighbors=5, novelty=True).fit(np.random.default_rng(0).normal(size=(50, 1)))
    (tmp_path / "model_dev%5Fa_7.skops").write_bytes(sio.dumps(lof))  # a _ in a device id is written %5F
    (tmp_path / "notes.txt").write_text("not a model")

    bundles = read_model_dir(tmp_path)

    assert list(bundles) == ["dev_a"] and isinstance(bundles["dev_a"].models["7"], DetectorModel)
    assert bundles["dev_a"].models["7"].metadata["n_samples"] == 50


def test_cli_imports_models_as_current_and_registers_devices(reference_dir, bscore_home):
    result = CliRunner().invoke(main, ["models", "import", str(reference_dir)])

    assert result.exit_code == 0, result.output
    assert "3 device bundle(s) imported" in result.output
    settings = Settings.from_env()
    blobs = LocalBlobStore(root=settings.blob_url)
    bundles = load_current_bundles(blobs, ["1", "2", "3"])
    assert {d: current_version(blobs, d) for d in bundles} == {d: b.version for d, b in bundles.items()}
    assert bundles["2"].models["3"].metadata["sklearn_version"] == "0.19.2"
    assert sorted(local_instance(settings).get_dynamic_partitions("devices")) == ["1", "2", "3"]


def test_cli_refuses_a_malicious_pickle_naming_file_and_global(tmp_path, bscore_home):
    class Payload:
        def __reduce__(self):
            return (eval, (f"open({str(tmp_path / 'ran')!r}, 'w')",))

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model_9_1").write_bytes(pickle.dumps(Payload()))

    result = CliRunner().invoke(main, ["models", "import", str(folder)])

    assert result.exit_code == 2
    assert f"{folder / 'model_9_1'}: refused global builtins.eval" in result.output
    assert not (tmp_path / "ran").exists()
    assert not (bscore_home / "blob" / "models").exists()


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no model_<device>_<sensor> files"):
        read_model_dir(tmp_path)
