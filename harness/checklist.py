"""Every check the harness reports: its name, when it runs, what it proves, when it is
skipped, and how each test backend runs it. The checks reference (docs/reference/checks.md)
is generated from this list, and a unit test finds every check name the code can report
and fails when one is not here."""

from __future__ import annotations

from dataclasses import dataclass

RUN = "run"


@dataclass(frozen=True)
class CheckDoc:
    name: str  # `<role>` stands for head, worker or notebook
    stage: str  # build | test | repro
    proves: str
    skipped: str = "never"  # when it is reported skipped (always with the reason)
    containers: str = RUN  # the default backend
    kube: str = RUN  # --backend kind


_NOT_TEST = "–"  # build and repro checks run before any backend

CHECKS: tuple[CheckDoc, ...] = (
    # build: bases and images
    CheckDoc("build:base", "build", "the cell's Debian base (or `bases:` image) was made or found; "
             "a failure names the step and keeps its log", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("build:<role>", "build", "the image built offline (BuildKit, `--network none`); a "
             "failure keeps the build log", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:python", "build", "the exact Python micro inside equals the cell's and "
             "the image's label", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:platform", "build", "the image's architecture, its platform label and "
             "`platform.machine()` inside are the cell's platform", containers=_NOT_TEST,
             kube=_NOT_TEST),
    CheckDoc("image:<role>:ray", "build", "`ray.__version__` and `ray.__commit__` inside equal the "
             "cell's and the labels", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:labels", "build", "the variant, role and lock labels are the "
             "cell's", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:non-root", "build", "the image runs as uid 1000",
             containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:cmd", "build", "the image's command is the documented one",
             containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:ray-cli", "build", "`ray --version` works", containers=_NOT_TEST,
             kube=_NOT_TEST),
    CheckDoc("image:<role>:no-leftovers", "build", "no stray wheel files and no pip caches",
             containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:bytecode", "build", "every `.pyc` under /opt/ray is checked-hash; on "
             "Python 3.11+ the sampled modules carry no column tables", containers=_NOT_TEST,
             kube=_NOT_TEST),
    CheckDoc("image:<role>:base-layer", "build", "a Debian base's rootfs is the image's first "
             "layer", "for a `bases:` registry base", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:kuberay-shell", "build", "`bash -lc` (how KubeRay starts a node) finds "
             "`ray` and `wget`", "for a cell that does not target `kuberay`",
             containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:no-secrets", "build", "no credentials in the image's history, "
             "environment or labels", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:sbom", "build", "the image's CycloneDX SBOM, made from the image, is "
             "valid and lists the Python micro, Ray and every Debian and Python package",
             containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:cuda", "build", "libcudart loads and reports the cell's CUDA "
             "version (its label too); the NVIDIA runtime variables are set",
             "only gpu cells carry it", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("image:<role>:vertex:contract", "build", "head and worker meet Vertex AI's list for a "
             "custom image (Ray, Python minor, packages)", "only cells that target `vertex` "
             "carry it", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("audit:locks", "build", "pip-audit's findings in the cell's locks: a failure under "
             "`audit: fail`, listed under `warn`", "`audit: off`, or (under `warn`) the audit "
             "could not run", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("freshness:os", "build", "Debian has published no security update for a package the "
             "base locked (a pending one is a warning)", "a `bases:` registry base, or the "
             "mirror cannot be read",
             containers=_NOT_TEST, kube=_NOT_TEST),
    # test: a cluster from the cell's images
    CheckDoc("cluster:start", "test", "reported, as an error, only when the engine or cluster "
             "refused to start the head, worker or notebook"),
    CheckDoc("cluster:ready", "test", "head and worker registered, judged on the head, within the "
             "ready timeout (required)"),
    CheckDoc("cluster:nodes-alive", "test", "reported only when a node died during the checks: "
             "which one, with its Ray logs' reason"),
    CheckDoc("client:connect", "test", "Ray Client (`ray://ray-head:10001`) connects from the "
             "notebook container"),
    CheckDoc("client:nodes", "test", "the client sees every node of the cluster alive"),
    CheckDoc("client:parity", "test", "a probe pinned to every node reports the client's and the "
             "cell's Python micro, Ray version and commit (required)"),
    CheckDoc("workload:tasks", "test", "24 tasks spread over both nodes return correct results"),
    CheckDoc("workload:actor", "test", "an actor keeps state across calls"),
    CheckDoc("workload:object", "test", "a 4 MiB object written on one node is read on the other"),
    CheckDoc("workload:placement-group", "test", "a STRICT_SPREAD placement group puts its two "
             "bundles' tasks on different nodes"),
    CheckDoc("workload:runtime-env", "test", "a job's `env_vars` and `working_dir` reach a task "
             "pinned to every node"),
    CheckDoc("dashboard:api", "test", "the dashboard answers `/api/version` with the cell's Ray "
             "version and commit"),
    CheckDoc("jobs:submit", "test", "a job through the Jobs API (KubeRay's RayJob, Vertex AI) "
             "reaches SUCCEEDED, its driver and a task on every node with the cell's versions "
             "(required)"),
    CheckDoc("serve:http", "test", "a two-replica Serve application deployed through the Jobs "
             "API answers from every replica's node with the cell's versions",
             kube="run: asks the head's proxy only, and says so"),
    CheckDoc("auth:token", "test", "with token authentication every client path accepts the "
             "token and refuses no token or a wrong one with Ray's own refusal; the token is in "
             "no log", "a Ray without token authentication",
             kube="skipped: the backend starts clusters without a token yet"),
    CheckDoc("notebook:execute", "test", "`parity.ipynb`, run by nbclient in the notebook image, "
             "asserts parity against the cluster (required)"),
    CheckDoc("notebook:jupyterlab", "test", "JupyterLab answers `/api/status` and serves `/lab`"),
    CheckDoc("kubeflow:contract", "test", "the notebook image started as Kubeflow's notebook "
             "controller starts it serves under NB_PREFIX, may be framed, runs as jovyan "
             "(1000) with a writable home, and its kernel runs `parity.ipynb`",
             "a cell that does not target `kubeflow`",
             kube="skipped: not modelled on Kubernetes yet"),
    CheckDoc("driver:connect", "test", "the notebook container joins as a 0-CPU node and "
             "`ray.init()` runs as a real driver, with Ray's own version check", "under QEMU "
             "(a joining node cannot start there; `jobs:submit` proves the driver's parity)"),
    CheckDoc("driver:nodes", "test", "the driver sees every node of the cluster alive",
             "under QEMU"),
    CheckDoc("driver:parity", "test", "parity of the driver with all three nodes (required; "
             "waived for `jobs:submit` under QEMU)", "under QEMU"),
    CheckDoc("gpu:e2e", "test", "Ray sees the host's GPUs and a `num_gpus=1` task gets "
             "one", "a host without the NVIDIA runtime (`gpu_e2e: required` then refuses the "
             "push)",
             kube="skipped: the backend requests no nvidia.com/gpu yet"),
    CheckDoc("security:no-published-ports", "test", "no container binds a host port",
             kube="run: every Service is ClusterIP"),
    CheckDoc("cell:verified", "test", "the cell's verdict in junit.xml: every required check ran "
             "and passed, none failed"),
    # verify-reproducible
    CheckDoc("repro:base-rootfs", "repro", "a fresh rootfs of the base has the same sha256",
             "for a `bases:` registry base", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("repro:<role>", "repro", "a rebuild from scratch (no cache) is identical file by "
             "file", containers=_NOT_TEST, kube=_NOT_TEST),
    CheckDoc("repro:<role>:sbom", "repro", "the rebuild's SBOM is byte-identical, but for the "
             "rebuild's own identity", containers=_NOT_TEST, kube=_NOT_TEST),
)  # fmt: skip
