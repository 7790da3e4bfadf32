"""What `push` checks of an image it reads back through the registry's API (zstd layers on
an engine too old to pull them): pure logic, on blobs made here and served from memory.
The same check against the real registry and a real containerd is in
tests/e2e/test_registry.py."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
import zstandard

from harness import registry, registry_api

REPO = "raycompat/ray-notebook"


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Served(registry_api.Registry):
    """A registry's answers held in memory: manifests and blobs by digest."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:1")
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, registry_api.Manifest] = {}
        self.fetched: list[str] = []

    def manifest(self, repo: str, reference: str) -> registry_api.Manifest | None:
        return self.manifests.get(reference)

    def has_blob(self, repo: str, digest: str) -> bool:
        return digest in self.blobs

    def fetch_blob(self, repo: str, digest: str, into: registry_api.Sink) -> None:
        self.fetched.append(digest)
        data = self.blobs[digest]
        for i in range(0, len(data), 7000):  # in pieces, as a socket delivers them
            into.write(data[i : i + 7000])


def image(served: Served, compression: str, layers: list[bytes]) -> tuple[str, str, list[str]]:
    """An image of these (uncompressed) layers, as push would upload it: the manifest's
    digest, the image id and the compressed layers' digests."""
    packed = [
        zstandard.ZstdCompressor(level=3).compress(raw)
        if compression == "zstd"
        else gzip.compress(raw, mtime=0)
        for raw in layers
    ]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]}})
    served.blobs[sha(config.encode())] = config.encode()
    served.blobs.update({sha(p): p for p in packed})
    media = registry_api.OCI_LAYER_ZSTD if compression == "zstd" else registry_api.LAYER_GZIP
    doc = {
        "schemaVersion": 2,
        "config": {"digest": sha(config.encode()), "size": len(config)},
        "layers": [{"mediaType": media, "digest": sha(p), "size": len(p)} for p in packed],
    }
    m = registry_api.Manifest(json.dumps(doc).encode(), registry_api.OCI_MANIFEST)
    served.manifests[m.digest] = m
    return m.digest, sha(config.encode()), [sha(p) for p in packed]


LAYERS = [b"layer one " * 5000, bytes(range(256)) * 400]


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_the_tested_image_verifies(compression: str) -> None:
    served = Served()
    digest, image_id, _ = image(served, compression, LAYERS)
    registry_api.verify_pushed(served, REPO, digest, image_id)


def test_a_layer_read_back_once_is_only_asked_for_again() -> None:
    """Head and worker share every layer: the second is read back as a pull would, from
    what the first read; a shared layer the registry does not have is still refused."""
    served = Served()
    digest, image_id, blobs = image(served, "zstd", LAYERS)
    known: dict[str, str] = {}
    registry_api.verify_pushed(served, REPO, digest, image_id, known)
    assert served.fetched == [image_id, *blobs] and set(known) == set(blobs)
    served.fetched.clear()
    registry_api.verify_pushed(served, REPO, digest, image_id, known)
    assert served.fetched == [image_id]  # the config only
    del served.blobs[blobs[0]]
    with pytest.raises(registry_api.RegistryError, match=r"layer 1 .*: not in "):
        registry_api.verify_pushed(served, REPO, digest, image_id, known)


def test_another_image_id_is_refused() -> None:
    served = Served()
    digest, _, _ = image(served, "zstd", LAYERS)
    with pytest.raises(registry_api.RegistryError, match="names config"):
        registry_api.verify_pushed(served, REPO, digest, sha(b"the tested config"))


def test_a_blob_served_with_other_bytes_is_refused() -> None:
    served = Served()
    digest, image_id, blobs = image(served, "zstd", LAYERS)
    served.blobs[blobs[1]] = zstandard.ZstdCompressor().compress(b"something else")
    with pytest.raises(registry_api.RegistryError, match=r"layer 2 .*served other bytes"):
        registry_api.verify_pushed(served, REPO, digest, image_id)


def test_a_layer_that_unpacks_to_another_tar_is_refused() -> None:
    """The blob is the one the manifest names, but not the layer the config lists."""
    served = Served()
    _, image_id, _ = image(served, "zstd", LAYERS)
    config = json.loads(served.blobs[image_id])
    other, *_ = image(served, "zstd", [b"another first layer", LAYERS[1]])
    doc = json.loads(served.manifests[other].body)
    doc["config"]["digest"] = image_id  # the tested config, another first layer
    m = registry_api.Manifest(json.dumps(doc).encode(), registry_api.OCI_MANIFEST)
    served.manifests[m.digest] = m
    with pytest.raises(registry_api.RegistryError, match=r"layer 1 .*unpacks to") as err:
        registry_api.verify_pushed(served, REPO, m.digest, image_id)
    assert config["rootfs"]["diff_ids"][0] in str(err.value)


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b + b"\0trailing", lambda b: b"\x28\xb5\x2f\xfd" * 9],
    ids=["truncated", "trailing-bytes", "not-zstd"],
)
def test_a_layer_that_does_not_decompress_whole_is_refused(damage: object) -> None:
    served = Served()
    raw = b"a layer " * 10000
    packed = damage(zstandard.ZstdCompressor().compress(raw))  # type: ignore[operator]
    config = json.dumps({"rootfs": {"diff_ids": [sha(raw)]}}).encode()
    served.blobs.update({sha(config): config, sha(packed): packed})
    layer = {"mediaType": registry_api.OCI_LAYER_ZSTD, "digest": sha(packed)}
    m = registry_api.Manifest(
        json.dumps({"config": {"digest": sha(config)}, "layers": [layer]}).encode(),
        registry_api.OCI_MANIFEST,
    )
    served.manifests[m.digest] = m
    with pytest.raises(registry_api.RegistryError, match=r"layer 1 .*does not decompress"):
        registry_api.verify_pushed(served, REPO, m.digest, sha(config))


@pytest.mark.parametrize(
    ("version", "pulls"),
    [
        ("20.10.24+dfsg1", False),
        ("22.06.0-beta.0", False),
        ("23.0.0", True),
        ("27.3.1", True),
        ("", False),
        ("dev", False),
    ],
)
def test_which_engines_pull_zstd_layers(version: str, pulls: bool) -> None:
    assert registry.pulls_zstd(version) is pulls
