"""The safe array format's ground rules, shared by every detector kind and by model bundles.

Errors (``ModelFormatError``), the size limits a file offered to bscore must stay within, the
metadata every stored model carries, content hashes of arrays, and the checked readers of zip
archives and ``.npy`` members (``check_archive``, ``read_npz``): loading runs no code, and no
archive is unpacked before its declared sizes are known to stay within ``MAX_UNPACKED_BYTES``.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile

import numpy as np

METADATA_KEYS = ("sklearn_version", "n_samples", "trained_from", "trained_to")

# Sizes no sensor model needs; a file beyond them is damaged or hostile.
MAX_MODEL_FILE_BYTES = 64 << 20  # a model file offered to import
MAX_UNPACKED_BYTES = 128 << 20  # what one archive or pickle may unpack to
MAX_ARCHIVE_MEMBERS = 10_000


class ModelFormatError(ValueError):
    """A stored model bundle is malformed or does not match its metadata."""


def model_metadata(sklearn_version: str | None, n_samples: int | None, trained_from=None, trained_to=None,
                   **extra) -> dict:
    """The metadata every stored model carries (unknown values are ``None``)."""
    def stamp(value):
        return None if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)

    return {
        "sklearn_version": sklearn_version,
        "n_samples": None if n_samples is None else int(n_samples),
        "trained_from": stamp(trained_from),
        "trained_to": stamp(trained_to),
        **extra,
    }


def content_hash(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def check_archive(name: str, data: bytes, max_bytes: int = MAX_UNPACKED_BYTES, what: str = "a zip archive",
                  headers: bool = True) -> zipfile.ZipFile:
    """Open a zip archive (``params.npz``, a skops file) only if unpacking it stays bounded.

    Parameters
    ----------
    name : str
        Names the archive in errors.
    data : bytes
        The archive.
    max_bytes : int
        Most bytes its members may decompress to, all together (``MAX_UNPACKED_BYTES``).
        Python's ``zipfile`` never returns more than a member's declared size (it fails
        the CRC instead), so checking the declared sizes bounds what a reader unpacks
        reading each member once.
    what : str
        What the archive should be, for the error when it is not a zip archive.
    headers : bool
        Also read each ``.npy`` member's header and refuse one claiming more data than
        the member holds (a reader that reads the headers itself passes False).

    Raises
    ------
    ModelFormatError
        Naming the archive and the limit it exceeds, or an array header that claims more
        data than its member holds.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelFormatError(f"{name}: not {what} ({exc})") from None
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        raise ModelFormatError(f"{name}: {len(infos):,} members, over the limit of {MAX_ARCHIVE_MEMBERS:,} "
                               "(MAX_ARCHIVE_MEMBERS)")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise ModelFormatError(f"{name}: unpacks to {total:,} bytes, over the limit of {max_bytes:,} bytes "
                               "(MAX_UNPACKED_BYTES)")
    for info in infos if headers else ():
        if info.filename.endswith(".npy"):
            _check_array_header(name, archive, info)
    return archive


def read_npz(name: str, data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, each header read once, plain numbers only (no pickle)."""
    archive = check_archive(name, data, headers=False)
    arrays = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise ModelFormatError(f"{name}: {info.filename} is not an array")
        member = archive.read(info)
        try:
            shape, fortran_order, dtype, offset = _npy_header(member)
        except ValueError as exc:
            raise ModelFormatError(f"{name}: {info.filename} is not a plain array ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ModelFormatError(f"{name}: {info.filename} holds {dtype} values, not plain numbers")
        count = int(np.prod(shape, dtype=np.float64))
        if count * dtype.itemsize != len(member) - offset:
            raise ModelFormatError(f"{name}: {info.filename} claims shape {shape} of {dtype}, "
                                   f"not the {len(member) - offset} bytes it holds")
        array = np.frombuffer(member, dtype=dtype, count=count, offset=offset)
        arrays[info.filename[:-4]] = array.reshape(shape, order="F" if fortran_order else "C")
    return arrays


# The header numpy writes for a plain array, e.g. {'descr': '<f8', 'fortran_order': False, 'shape': (3, 1), }
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?[biuf][0-9]{1,2})', 'fortran_order': (True|False), "
                         r"'shape': \(((?:[0-9]{1,18}, )*[0-9]{1,18},?)?\), \} *\n")


def _npy_header(member: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of a ``.npy`` file's bytes.

    Bundles hold thousands of tiny arrays: numpy's own reader (``ast.literal_eval`` per
    header) is the slowest part of loading them, so the header numpy writes is matched
    directly and anything else goes to numpy's reader.
    """
    if member[:8] == b"\x93NUMPY\x01\x00" and len(member) >= 10:
        length = int.from_bytes(member[8:10], "little")
        match = _NPY_HEADER.fullmatch(member[10:10 + length].decode("latin1"))
        if match:
            shape = tuple(int(n) for n in match[3].split(",") if n.strip()) if match[3] else ()
            return shape, match[2] == "True", np.dtype(match[1]), 10 + length
    stream = io.BytesIO(member)
    major, _ = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(stream)
    return shape, fortran_order, dtype, stream.tell()


def _check_array_header(name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse a ``.npy`` member whose header claims more data than the member holds."""
    with archive.open(info) as member:
        major, _ = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
        if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
            raise ModelFormatError(f"{name}: {info.filename} claims shape {shape} of {dtype}, "
                                   f"more than its {info.file_size} bytes")
