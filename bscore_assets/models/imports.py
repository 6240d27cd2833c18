"""``bscore models import`` as a run (``model_import_job``), so that Dagster records it.

The run scans the folder (``scoring.model_import``), stores each good device's bundle, registers
new devices as partitions, and records a ``device_models`` materialization per imported device
(status ``imported``, its version) before the versions become current, as training does. The
recorded materializations are what Declarative Automation sees: the look-back's hours are
rescored with the imported models, and the UI shows who changed a device's model and when.
"""

from pathlib import Path

import dagster as dg

from bscore_assets.partitions import device_partitions_def, natural_order
from resources.blob import BlobStore
from scoring.detectors import kind_of
from scoring.model_import import ModelImport, scan_model_dir
from scoring.model_store import make_current, save_bundle


class ModelImportConfig(dg.Config):
    """The folder of ``model_<device>_<sensor>`` files, as an absolute path (the run may not
    start where the command was typed)."""

    directory: str


@dg.op(out=dg.Out(ModelImport))
def import_model_files(context: dg.OpExecutionContext, config: ModelImportConfig, blob: BlobStore):
    """Store the folder's good device bundles and record each as a ``device_models`` materialization."""
    directory = Path(config.directory)
    if not directory.is_absolute():
        raise dg.Failure(f"model_import_job needs an absolute folder, not {config.directory!r}")
    found = scan_model_dir(directory)  # a folder that is not one raises ValueError naming it
    for bundle in found.bundles.values():
        save_bundle(blob, bundle, make_current=False)
    known = set(context.instance.get_dynamic_partitions(device_partitions_def.name))
    new = natural_order(set(found.bundles) - known)
    if new:
        context.instance.add_dynamic_partitions(device_partitions_def.name, new)
    for device, bundle in sorted(found.bundles.items()):
        yield dg.AssetMaterialization(
            "device_models", partition=device,
            metadata={"status": "imported", "version": bundle.version, "imported_from": str(directory),
                      "sensors": len(bundle.models), "kinds": sorted({kind_of(m).name for m in bundle.models.values()})})
    # The materializations naming the versions are stored: only now do they become current.
    for device, bundle in found.bundles.items():
        make_current(blob, device, bundle.version)
    for name, reason in sorted(found.refused.items()):
        context.log.error(f"refused {reason}")
    context.log.info(f"{len(found.bundles)} device bundle(s) imported from {directory}, "
                     f"{len(found.refused)} file(s) refused")
    yield dg.Output(ModelImport.of(found, directory))


@dg.job(description="Import a folder of model files as the devices' current bundles (bscore models import).")
def model_import_job():
    import_model_files()
