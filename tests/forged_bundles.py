"""Bundle files whose hashes match but whose parameters are bad, as a tool other than bscore
(or a bscore without validation) could have written them. The loader must refuse them by
their content, not only by their hashes."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

from scoring.model_format import ModelBundle, SensorModel, _sha256, bundle_to_files
from scoring.blob_layout import current_version_key, model_version_prefix


def good_model(n_sv: int = 3, seed: int = 0) -> SensorModel:
    rng = np.random.default_rng(seed)
    return SensorModel(mean=np.array([12.5]), scale=np.array([1.5]), support_vectors=rng.normal(size=(n_sv, 1)),
                       dual_coef=np.full(n_sv, 1.0 / n_sv), intercept=-0.5, metadata={"n_samples": 720})


def forged_files(bundle: ModelBundle, sensor: str, arrays: dict | None = None, spec: dict | None = None
                 ) -> dict[str, bytes]:
    """``bundle``'s files with ``sensor``'s arrays and JSON spec overridden, hashes recomputed."""
    files = bundle_to_files(bundle)
    with np.load(io.BytesIO(files["params.npz"])) as npz:
        stored = {key: npz[key] for key in npz.files}
    for name, value in (arrays or {}).items():
        stored[f"{sensor}/{name}"] = np.asarray(value)
    buffer = io.BytesIO()
    np.savez(buffer, **stored)
    params = buffer.getvalue()
    meta = json.loads(files["bundle.json"])
    meta["sensors"][sensor].update(spec or {})
    meta["sensors"][sensor]["sha256"] = _sha256([v for k, v in stored.items() if k.rsplit("/", 1)[0] == sensor])
    meta["params_sha256"] = hashlib.sha256(params).hexdigest()
    return {"params.npz": params, "bundle.json": json.dumps(meta).encode()}


def write_forged(blobs, bundle: ModelBundle, sensor: str, arrays: dict | None = None, spec: dict | None = None) -> None:
    """Store a forged bundle as ``bundle.device``'s current version."""
    base = model_version_prefix(bundle.device, bundle.version)
    for name, data in forged_files(bundle, sensor, arrays, spec).items():
        blobs.write_bytes(f"{base}/{name}", data)
    blobs.write_bytes(current_version_key(bundle.device), json.dumps({"version": bundle.version}).encode())
