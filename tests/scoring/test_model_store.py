"""The model store: every way a device's stored model can be wrong refuses that device only,
and bundles load with one listing and concurrent reads."""

import threading

import numpy as np
import pytest

from resources.blob import LocalBlobStore
from scoring.model_format import ModelBundle, ModelFormatError
from scoring.model_store import load_current_bundles, load_current_bundles_or_refusals, save_bundle
from tests.forged_bundles import good_model, write_forged

DEVICES = ["a", "b", "c"]


@pytest.fixture
def blobs(tmp_path):
    store = LocalBlobStore(root=str(tmp_path / "blob"))
    for device in DEVICES:
        save_bundle(store, ModelBundle(device, "v1", {"1": good_model(), "2": good_model(seed=1)}))
    return store


FORGERIES = {
    "NaN support vector": ({"support_vectors": np.array([[np.nan], [0.0], [1.0]])}, {}, "support_vectors holds NaN"),
    "infinite dual coefficient": ({"dual_coef": np.array([np.inf, 0.5, 0.5])}, {}, "dual_coef holds NaN or infinite"),
    "NaN intercept": ({}, {"intercept": float("nan")}, "intercept nan is not a finite number"),
    "two features": ({"support_vectors": np.zeros((3, 2)), "mean": np.zeros(2), "scale": np.ones(2)}, {},
                     "2 features"),
    "huge poly degree": ({}, {"kernel": "poly", "degree": 10**6}, "MAX_POLY_DEGREE"),
    "absurd support vector count": ({"support_vectors": np.zeros((300_000, 1)), "dual_coef": np.zeros(300_000)}, {},
                                    "MAX_SUPPORT_VECTORS"),
    "zero scale": ({"scale": np.array([0.0])}, {}, "scale [0.0] is not positive"),
    "text arrays": ({"mean": np.array(["x"])}, {}, "not plain numbers"),
}


@pytest.mark.parametrize("arrays, spec, reason", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_bad_stored_model_refuses_its_device_only(blobs, arrays, spec, reason):
    write_forged(blobs, ModelBundle("b", "v2", {"1": good_model(), "2": good_model(seed=1)}), "2", arrays, spec)

    bundles, refused = load_current_bundles_or_refusals(blobs, DEVICES)

    assert sorted(bundles) == ["a", "c"] and list(refused) == ["b"]
    assert reason in refused["b"] and "bundle b/v2" in refused["b"]
    with pytest.raises(ModelFormatError, match="device b"):
        load_current_bundles(blobs, DEVICES)


DAMAGED_CURRENT = {
    "not JSON": (b"\x00garbage", "does not name a version"),
    "not UTF-8": (b'{"version": "\xff"}', "does not name a version"),
    "no version": (b'{"v": 1}', "does not name a version"),
    "a path as version": (b'{"version": "../a/v1"}', "does not name a version"),
    "a version without files": (b'{"version": "v9"}', "names version v9, which has no params.npz or bundle.json"),
}


@pytest.mark.parametrize("content, reason", DAMAGED_CURRENT.values(), ids=DAMAGED_CURRENT.keys())
def test_a_damaged_current_json_refuses_its_device_only(blobs, content, reason):
    blobs.write_bytes("models/c/current.json", content)

    bundles, refused = load_current_bundles_or_refusals(blobs, DEVICES)

    assert sorted(bundles) == ["a", "b"] and list(refused) == ["c"] and reason in refused["c"]


def test_a_bundle_stored_under_another_device_is_refused(blobs):
    blobs.write_bytes("models/a/v1/bundle.json", blobs.read_bytes("models/b/v1/bundle.json"))
    blobs.write_bytes("models/a/v1/params.npz", blobs.read_bytes("models/b/v1/params.npz"))

    bundles, refused = load_current_bundles_or_refusals(blobs, DEVICES)

    assert sorted(bundles) == ["b", "c"] and "bundle of device 'b'" in refused["a"]


class CountingBlobs:
    """The real folder store, counting calls and the reads in flight at once."""

    def __init__(self, store, delay: float = 0.0):
        self.store, self.delay = store, delay
        self.lists, self.reads, self.in_flight, self.most_in_flight = 0, 0, 0, 0
        self.lock = threading.Lock()

    def list(self, prefix):
        self.lists += 1
        return self.store.list(prefix)

    def exists(self, key):
        raise AssertionError("the bulk loader knows what exists from its one listing")

    def read_bytes(self, key):
        with self.lock:
            self.reads += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            threading.Event().wait(self.delay)  # a blob store's round trip
            return self.store.read_bytes(key)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_bundles_load_with_one_listing_and_concurrent_reads(blobs):
    for i in range(40):
        save_bundle(blobs, ModelBundle(f"d{i:02d}", "v1", {"1": good_model(seed=i)}))
    counting = CountingBlobs(blobs, delay=0.02)
    devices = DEVICES + [f"d{i:02d}" for i in range(40)] + ["no-model"]

    bundles, refused = load_current_bundles_or_refusals(counting, devices)

    assert len(bundles) == 43 and not refused and "no-model" not in bundles
    assert counting.lists == 1 and counting.reads == 3 * 43  # current.json, params.npz, bundle.json
    assert counting.most_in_flight > 1
    np.testing.assert_array_equal(bundles["d07"].models["1"].support_vectors, good_model(seed=7).support_vectors)


def test_an_outage_of_the_store_is_not_a_refusal(blobs):
    class Down(CountingBlobs):
        def read_bytes(self, key):
            raise ConnectionError("blob store unreachable")

    with pytest.raises(ConnectionError):
        load_current_bundles_or_refusals(Down(blobs), DEVICES)
