"""Small model files that would unpack to gigabytes are refused before they do (issue 11,
case 11): the error names the file and the limit, and the reader's peak memory stays bounded.

Each bomb is read in a fresh Python process whose address space is capped at 1 GiB above
what it uses after its imports (so a regression fails with MemoryError instead of taking the
machine), and whose peak resident memory (``VmHWM``) is measured."""

import functools
import io
import json
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.neighbors import LocalOutlierFactor

from scoring.model_format import MAX_UNPACKED_BYTES, ModelBundle
from tests.forged_bundles import good_model

pytestmark = pytest.mark.slow  # each bomb is read in a subprocess

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20

READER = r"""
import json, resource, sys
from pathlib import Path
from resources.blob import LocalBlobStore
from scoring.model_import import scan_model_dir
from scoring.model_store import load_current_bundles_or_refusals

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + (1 << 30), resource.RLIM_INFINITY))
before = status("VmRSS")
kind, path = sys.argv[1], sys.argv[2]
if kind == "import":
    found = scan_model_dir(path)
    outcome = {"imported": sorted(found.bundles), "refused": found.refused}
else:
    bundles, refused = load_current_bundles_or_refusals(LocalBlobStore(root=path), ["1", "2"])
    outcome = {"imported": sorted(bundles), "refused": refused}
# VmHWM is this process's own peak; ru_maxrss can carry the parent's peak across exec.
outcome["growth"] = status("VmHWM") - before
print(json.dumps(outcome))
"""


def read_in_a_fresh_process(kind: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", READER, kind, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def frombuffer_bomb(copies: int = 2400, size: int = MiB) -> bytes:
    """A pickle naming one memoized 1 MB buffer ``copies`` times to numpy's allowed ``_frombuffer``."""
    out = bytearray(b"\x80\x04")
    out += b"cnumpy.core.numeric\n_frombuffer\nq\x00"  # GLOBAL, BINPUT 0
    out += b"cnumpy\ndtype\nq\x01"
    out += b"B" + struct.pack("<I", size) + bytes(size) + b"q\x02"  # BINBYTES, BINPUT 2
    out += b"h\x01\x8c\x02u1\x85Rq\x03"  # dtype('u1') -> memo 3
    out += b"J" + struct.pack("<i", size) + b"\x85q\x04"  # (size,) -> memo 4
    out += b"\x8c\x01Cq\x05"  # 'C' -> memo 5
    out += b"]q\x06"  # an empty list
    for _ in range(copies):
        out += b"h\x00(h\x02h\x03h\x04h\x05tRa"  # list.append(_frombuffer(buffer, dtype, shape, order))
    return bytes(out) + b"."


def encode_bomb(copies: int = 2400, size: int = MiB) -> bytes:
    """A pickle asking the allowed ``_codecs.encode`` to copy one memoized 1 MB string ``copies`` times."""
    out = bytearray(b"\x80\x04c_codecs\nencode\nq\x00")
    out += b"X" + struct.pack("<I", size) + b"a" * size + b"q\x01\x8c\x06latin1q\x02]q\x03"
    for _ in range(copies):
        out += b"h\x00h\x01h\x02\x86Ra"
    return bytes(out) + b"."


def lof_skops() -> tuple[zipfile.ZipFile, dict]:
    lof = LocalOutlierFactor(n_neighbors=5, novelty=True).fit(np.random.default_rng(0).normal(size=(50, 1)))
    archive = zipfile.ZipFile(io.BytesIO(sio.dumps(lof)))
    return archive, json.loads(archive.read("schema.json"))


BOMB_MEMBER = "zz/junk.npy"


@functools.lru_cache(maxsize=1)
def zeros_archive() -> bytes:
    """A zip whose one ``.npy`` member is 1 GiB of zeros, deflated to about 1 MB while streamed
    (never whole in memory); bombs are this archive with their other members appended."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": ((1 << 30) // 8,)})
    buffer = io.BytesIO()
    info = zipfile.ZipInfo(BOMB_MEMBER)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w") as archive, archive.open(info, "w", force_zip64=True) as member:
        member.write(header.getvalue())
        chunk = bytes(16 * MiB)
        for _ in range((1 << 30) // len(chunk)):
            member.write(chunk)
    return buffer.getvalue()


def bomb_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO(zeros_archive())
    with zipfile.ZipFile(buffer, "a") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def skops_zip_bomb(path: Path) -> None:
    """A LocalOutlierFactor whose (unscored) ``negative_outlier_factor_`` is 1 GiB of zeros, deflated."""
    source, schema = lof_skops()
    schema["content"]["content"]["negative_outlier_factor_"]["file"] = BOMB_MEMBER
    members = {info.filename: source.read(info) for info in source.infolist() if info.filename != "schema.json"}
    path.write_bytes(bomb_with({**members, "schema.json": json.dumps(schema).encode()}))


def skops_schema_bomb(path: Path) -> None:
    """A LocalOutlierFactor with an extra attribute listing one stored 1 MB array 2,400 times."""
    source, schema = lof_skops()
    node = dict(schema["content"]["content"]["_lrd"], file="big.npy")
    schema["content"]["content"]["extra_"] = {
        "__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "__id__": 1,
        "content": [dict(node, __id__=10 + i) for i in range(2400)]}
    big = io.BytesIO()
    np.save(big, np.zeros(MiB // 8))
    with zipfile.ZipFile(path, "w") as archive:
        for info in source.infolist():
            if info.filename != "schema.json":
                archive.writestr(info.filename, source.read(info))
        archive.writestr("big.npy", big.getvalue())
        archive.writestr("schema.json", json.dumps(schema))


BOMBS = {
    "pickle _frombuffer": ("model_1_1", lambda p: p.write_bytes(frombuffer_bomb())),
    "pickle _codecs.encode": ("model_1_1", lambda p: p.write_bytes(encode_bomb())),
    "skops zip bomb": ("model_1_1.skops", skops_zip_bomb),
    "skops schema reading one file 2,400 times": ("model_1_1.skops", skops_schema_bomb),
}


@pytest.mark.parametrize("name, make", BOMBS.values(), ids=BOMBS.keys())
def test_a_model_file_that_unpacks_to_gigabytes_is_refused_in_bounded_memory(tmp_path, name, make):
    folder = tmp_path / "models"
    folder.mkdir()
    make(folder / name)
    (folder / "model_2_1").write_bytes(pickle.dumps(good_model().to_pipeline()))
    assert (folder / name).stat().st_size < 3 * MiB

    outcome = read_in_a_fresh_process("import", folder)

    assert outcome["imported"] == ["2"] and list(outcome["refused"]) == [name]
    reason = outcome["refused"][name]
    assert reason.startswith(str(folder / name)) and "MAX_UNPACKED_BYTES" in reason, reason
    assert f"{MAX_UNPACKED_BYTES:,}" in reason
    assert outcome["growth"] < MAX_UNPACKED_BYTES + 64 * MiB, outcome


def test_a_stored_params_npz_bomb_is_refused_at_load_in_bounded_memory(tmp_path):
    """A bundle whose hashes match, with an extra 1 GiB member deflated to about 1 MB."""
    import hashlib

    from scoring.model_format import bundle_to_files
    from scoring.model_store import save_bundle
    from resources.blob import LocalBlobStore

    blobs = LocalBlobStore(root=str(tmp_path / "blob"))
    for device in ("1", "2"):
        save_bundle(blobs, ModelBundle(device, "v1", {"1": good_model()}))
    files = bundle_to_files(ModelBundle("1", "v1", {"1": good_model()}))
    with zipfile.ZipFile(io.BytesIO(files["params.npz"])) as source:
        params = bomb_with({info.filename: source.read(info) for info in source.infolist()})
    meta = json.loads(files["bundle.json"])
    meta["params_sha256"] = hashlib.sha256(params).hexdigest()
    blobs.write_bytes("models/1/v1/params.npz", params)
    blobs.write_bytes("models/1/v1/bundle.json", json.dumps(meta).encode())

    outcome = read_in_a_fresh_process("load", tmp_path / "blob")

    assert outcome["imported"] == ["2"] and list(outcome["refused"]) == ["1"]
    assert "bundle 1/v1 params.npz: unpacks to 1,073,74" in outcome["refused"]["1"]
    assert "MAX_UNPACKED_BYTES" in outcome["refused"]["1"]
    assert outcome["growth"] < 64 * MiB, outcome
