"""Every label the harness sets: the public contract of its images and Docker objects.

Images (and, by inheritance, containers started from them) carry MANAGED and the
identity labels below; only the objects the harness creates for a run carry RUN, which is
what `clean` and interrupts select on. The README's "Labels" section lists them.
"""

from __future__ import annotations

NS = "io.raycompat"
# On everything the harness builds or creates (`image`, `base`, `cluster`, `repro`).
# Images pass it on to containers started from them, so it alone does not mean "ours".
MANAGED = f"{NS}.managed"
# Only on what a run creates (containers, networks, volumes, temporary images, Kubernetes
# namespaces): `<run id>`.
RUN = f"{NS}.run"
CELL = f"{NS}.cell"  # ray2.60.0-py3.11.2-cpu
ROLE = f"{NS}.role"  # head | worker | notebook
RAY = f"{NS}.ray.version"
COMMIT = f"{NS}.ray.commit"
PYTHON = f"{NS}.python.version"
VARIANT = f"{NS}.variant"  # cpu | gpu
PLATFORM = f"{NS}.platform"  # linux/amd64 | linux/arm64: the image's, as built
CUDA = f"{NS}.cuda.version"  # gpu cells: the CUDA runtime (major.minor)
LOCK = f"{NS}.lock.sha256"  # digest of the cell's two lock files
BUILD_KEY = f"{NS}.build.key"  # digest of everything that went into the image
ROOTFS = f"{NS}.base.rootfs.sha256"  # Debian bases: the rootfs tarball (= first layer)
BASE_KEY = f"{NS}.base.key"  # Debian bases: digest of the rootfs recipe and its lock
BASE_LOCK = f"{NS}.base.lock.sha256"  # Debian bases: digest of the base's Debian lock
BASE_SOURCE = f"{NS}.base.source"  # debian:<suite> or image:<ref>

OCI = "org.opencontainers.image"
OCI_TITLE = f"{OCI}.title"
OCI_DESCRIPTION = f"{OCI}.description"
OCI_VERSION = f"{OCI}.version"  # the tag suffix: <ray>-py<python>-<cpu|cuXYZ>
OCI_CREATED = f"{OCI}.created"  # SOURCE_DATE_EPOCH, not the build's wall clock
OCI_BASE_NAME = f"{OCI}.base.name"
