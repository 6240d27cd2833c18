"""Importing a folder of model files: library and ``bscore models import``."""

import pickle

import dagster as dg
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
from scoring.model_import import import_model_dir, parse_model_file_name, read_model_dir, scan_model_dir
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
    instance = local_instance(settings)
    assert sorted(instance.get_dynamic_partitions("devices")) == ["1", "2", "3"]
    # The import is a run that records each device's new model, as training does.
    records = instance.fetch_materializations(dg.AssetKey("device_models"), limit=10).records
    recorded = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}
    assert {d: m["version"].value for d, m in recorded.items()} == {d: b.version for d, b in bundles.items()}
    assert {m["status"].value for m in recorded.values()} == {"imported"}
    assert {instance.get_run_by_id(r.run_id).job_name for r in records} == {"model_import_job"}


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


def test_importing_an_empty_folder_says_so_in_one_line(bscore_home, tmp_path):
    (tmp_path / "models").mkdir()
    result = CliRunner().invoke(main, ["models", "import", str(tmp_path / "models")])
    assert result.exit_code == 2, result.output
    assert f"bscore: no model_<device>_<sensor> files in {tmp_path / 'models'}" in result.output


# Names (issue 11, case 16) and validation at import (cases 6 and 9).

def fitted_pipeline(seed: int = 0, **svm):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    x = np.random.default_rng(seed).uniform(10, 15, (80, 1))
    return Pipeline([("scaler", StandardScaler()), ("classifier", OneClassSVM(gamma=0.01, **svm))]).fit(x)


@pytest.mark.parametrize("name, device, sensor", [
    ("model_1_3.pkl", "1", "3"),
    ("model_1_flow_rate", "1", "flow_rate"),
    ("model_1_flow_rate.pickle", "1", "flow_rate"),
    ("model_pump%5F7_3", "pump_7", "3"),
    ("model_1_temp.1", "1", "temp.1"),
    ("model_1_flow.rate.pkl", "1", "flow.rate"),
])
def test_names_split_at_the_first_underscore_after_model(name, device, sensor):
    assert parse_model_file_name(name)[:2] == (device, sensor)


@pytest.mark.parametrize("name, fix", [
    ("model_1", "cannot tell device from sensor; name it model_<device>_<sensor>"),
    ("model__3", "cannot tell device from sensor"),
    ("model_1_flow.rate", "Add .pkl or .skops to the name"),
    ("model_1_a b", "breaks the id rule"),
])
def test_ambiguous_names_are_refused_naming_the_fix(name, fix):
    with pytest.raises(ValueError, match=fix):
        parse_model_file_name(name)


def test_every_file_is_imported_or_refused_with_a_reason(tmp_path):
    good = pickle.dumps(fitted_pipeline())
    nan = fitted_pipeline()
    nan.steps[1][1].support_vectors_[0, 0] = np.nan
    (tmp_path / "model_1_3.pkl").write_bytes(good)
    (tmp_path / "model_1_flow_rate").write_bytes(good)
    (tmp_path / "model_2_1").write_bytes(good)
    (tmp_path / "model_2_2.pkl").write_bytes(pickle.dumps(nan))
    (tmp_path / "model_3_1").write_bytes(good)
    (tmp_path / "model_3_1.pkl").write_bytes(good)
    (tmp_path / "model_4").write_bytes(good)
    (tmp_path / "README.md").write_text("notes")

    found = scan_model_dir(tmp_path)

    assert list(found.bundles) == ["1"] and sorted(found.bundles["1"].models) == ["3", "flow_rate"]
    assert sorted(found.refused) == ["model_2_2.pkl", "model_3_1", "model_3_1.pkl", "model_4"]
    assert found.refused["model_2_2.pkl"] == f"{tmp_path / 'model_2_2.pkl'}: support_vectors holds NaN or infinite values"
    assert "also in model_3_1.pkl; keep one of them" in found.refused["model_3_1"]
    assert "cannot tell device from sensor" in found.refused["model_4"]
    assert found.devices_refused == {"2": ["model_2_2.pkl"], "3": ["model_3_1.pkl", "model_3_1"]}
    assert found.not_models == {"README.md": "not named model_<device>_<sensor>"}
    with pytest.raises(ValueError, match="model_2_2.pkl: support_vectors holds NaN"):
        read_model_dir(tmp_path)


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.steps[1][1].dual_coef_.__setitem__((0, 0), np.inf), "dual_coef holds NaN or infinite"),
    (lambda p: setattr(p.steps[0][1], "mean_", np.array([np.nan])), "mean holds NaN or infinite"),
    (lambda p: setattr(p.steps[1][1], "_intercept_", np.array([np.nan])), "intercept nan is not a finite number"),
], ids=["inf dual coefficient", "NaN scaler mean", "NaN intercept"])
def test_non_finite_parameters_are_refused_at_import(tmp_path, damage, reason):
    pipeline = fitted_pipeline()
    damage(pipeline)
    (tmp_path / "model_1_1").write_bytes(pickle.dumps(pipeline))

    assert reason in scan_model_dir(tmp_path).refused["model_1_1"]


def test_two_features_and_huge_poly_degrees_are_refused_at_import(tmp_path):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    x = np.random.default_rng(0).normal(size=(50, 2))
    (tmp_path / "model_1_1").write_bytes(pickle.dumps(Pipeline([("s", StandardScaler()), ("c", OneClassSVM())]).fit(x)))
    (tmp_path / "model_1_2").write_bytes(pickle.dumps(fitted_pipeline(kernel="poly", degree=40)))
    lof = LocalOutlierFactor(n_neighbors=5, novelty=True).fit(x)
    (tmp_path / "model_1_3.skops").write_bytes(sio.dumps(lof))

    refused = scan_model_dir(tmp_path).refused

    assert "the model has 2 features" in refused["model_1_1"]
    assert "degree 40 is outside 0..10 (MAX_POLY_DEGREE)" in refused["model_1_2"]
    assert "LocalOutlierFactor has 2 features" in refused["model_1_3.skops"]


def test_cli_imports_the_good_devices_and_refuses_the_rest_by_name(tmp_path, bscore_home):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model_1_3.pkl").write_bytes(pickle.dumps(fitted_pipeline()))
    (folder / "model_2_1").write_bytes(b"not a pickle")
    (folder / "notes.txt").write_text("x")

    result = CliRunner().invoke(main, ["models", "import", str(folder)])

    assert result.exit_code == 2
    assert "device 1: 1 model(s)" in result.output and "skipped notes.txt: not named" in result.output
    assert f"refused {folder / 'model_2_1'}: not a readable model pickle" in result.output
    assert "device 2: not imported (refused: model_2_1); its current bundle is unchanged" in result.output
    assert "1 device bundle(s) imported and registered as current; 1 file(s) refused" in result.output
    blobs = LocalBlobStore(root=Settings.from_env().blob_url)
    assert current_version(blobs, "1") is not None and current_version(blobs, "2") is None


# Issue 19: items 3 and 4, and item 11's symlinks.

def test_a_device_with_a_file_refused_for_its_name_keeps_its_current_bundle(tmp_path):
    """Item 3: ``model_1_2.c`` is refused for its name; device 1 must not be imported without sensor 2."""
    blobs = LocalBlobStore(root=str(tmp_path / "blob"))
    folder = tmp_path / "models"
    folder.mkdir()
    good = pickle.dumps(fitted_pipeline())
    for name in ("model_1_1", "model_1_2"):
        (folder / name).write_bytes(good)
    import_model_dir(blobs, folder)
    before = current_version(blobs, "1")
    (folder / "model_1_2").rename(folder / "model_1_2.c")

    found = import_model_dir(blobs, folder)

    assert "model_1_2.c" in found.refused and found.devices_refused == {"1": ["model_1_2.c"]}
    assert found.bundles == {} and current_version(blobs, "1") == before


@pytest.mark.parametrize("device", ["..", "-rf", "1\n", ".hidden", "a/b"])
def test_device_ids_follow_the_ingest_id_rule(device):
    """Item 4: the same contract as readings' ids (scoring.readings.ID_PATTERN), whole string."""
    with pytest.raises(ValueError, match="breaks the id rule"):
        parse_model_file_name(f"model_{device}_1".replace("/", "%2F"))


def test_bad_device_ids_refuse_only_their_own_file_by_name(tmp_path):
    """Item 4: ``..``, ``-rf`` and an id ending in a newline are refused per file; the others import."""
    blobs = LocalBlobStore(root=str(tmp_path / "blob"))
    folder = tmp_path / "models"
    folder.mkdir()
    good = pickle.dumps(fitted_pipeline())
    names = ["model_.._1", "model_-rf_1", "model_7\n_1", "model_1_1", "model_9_1"]
    for name in names:
        (folder / name).write_bytes(good)

    found = import_model_dir(blobs, folder)

    assert sorted(found.bundles) == ["1", "9"]
    assert sorted(found.refused) == sorted(["model_.._1", "model_-rf_1", "model_7\n_1"])
    assert all("breaks the id rule" in reason for reason in found.refused.values())
    assert current_version(blobs, "1") and current_version(blobs, "9") and not blobs.list("models/-rf")


def test_symlinks_in_a_model_folder_are_refused_by_name(tmp_path):
    """Item 11: a link could point anywhere on the host; it is refused, and its device keeps its models."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "real").write_bytes(pickle.dumps(fitted_pipeline()))
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model_1_1").write_bytes(pickle.dumps(fitted_pipeline()))
    (folder / "model_1_2").symlink_to(outside / "real")
    (folder / "model_2_1").symlink_to(outside / "real")

    found = scan_model_dir(folder)

    assert found.bundles == {}
    assert found.refused["model_1_2"].endswith("model_1_2: a symbolic link (to another file); copy the file itself "
                                               "into the folder")
    assert found.devices_refused == {"1": ["model_1_2"], "2": ["model_2_1"]}
