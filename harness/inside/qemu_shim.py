"""Ray's local raylet discovery under QEMU user emulation (a linux/arm64 cell tested on an
x86_64 host). Staged as `sitecustomize.py` into the test containers of an emulated cell
only (PYTHONPATH); never part of an image.

Why: a driver (`ray.init(address=...)`, a Jobs API job, Ray Client's SpecificServer) finds
its node by scanning /proc for a process whose argv[0] names `raylet`
(ray/_private/services.py `_is_raylet_process`). Under binfmt_misc every emulated process's
/proc/<pid>/cmdline starts with the emulator (`/usr/libexec/qemu-binfmt/aarch64-binfmt-P
/opt/ray/.../raylet ...`), so no raylet is found and every driver fails with "No node
info found matching attributes". On arm64 hardware argv[0] is the raylet and this is not
needed. The shim drops the emulator's own argv entry before Ray's test; nothing else of
Ray changes. Standard library only; Python 3.9 compatible.
"""

import importlib.abc
import importlib.machinery
import os
import sys

TARGET = "ray._private.services"


def _emulator(arg: str) -> bool:
    name = os.path.basename(arg)
    return name.startswith("qemu-") or name.endswith("-binfmt-P") or "binfmt" in name


class _Patch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):  # type: ignore[no-untyped-def]
            run(module)
            original = getattr(module, "_is_raylet_process", None)
            if original is None:
                return

            def _is_raylet_process(cmdline):  # type: ignore[no-untyped-def]
                if cmdline and len(cmdline) > 2 and _emulator(cmdline[0]):
                    cmdline = cmdline[1:]  # [emulator, binary, argv0, args...]
                return original(cmdline)

            module._is_raylet_process = _is_raylet_process

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _Patch())
