"""Remove from an installed environment what no Ray process reads, in the layer that installed it.

`images/Dockerfile` runs it (bind-mounted from the build context, never copied into an image)
right after each `pip install`, with the image's own Python (3.9 and newer):

    python trim.py [--link-duplicates ROOT [--except-listed LIST]] SITE_PACKAGES_DIR
    python trim.py --list ROOT LIST

It removes, and prints by kind how many paths (or stripped or linked files) and bytes:

- `ray/jars`: Ray's Java jars (no JVM here; Ray starts Java workers only where `java` is);
- directories named `tests`: the packages' own test suites (numpy's alone is ~16 MB);
- `*.map` under Ray's dashboard: source maps, read only by a browser's developer tools;
- binaries for Windows and macOS, by suffix and checked by their first bytes (a PE image, a
  Microsoft debug-symbol file or a Mach-O image): distlib's launchers in pip (`*.exe`),
  debugpy's Windows and macOS attach helpers and their symbols (`*.dll`, `*.pyd`, `*.pdb`,
  `*.dylib`: 15 MB in a notebook); a Linux process loads none of them;
- `jupyterlab/galata`: the helper extension of Galata, JupyterLab's own UI-test framework
  (5.6 MB compressed); JupyterLab loads it only in dev mode or when a test configuration
  adds it (its docstring: never in production);
- virtualenv's seed wheels meant for other Python versions than this interpreter's (a
  `runtime_env` virtualenv is always made from this interpreter);
- the DWARF sections (`.debug_*`) of third-party ELF files: only a debugger reads them, and
  symbol tables stay, so backtraces keep their function names. Ray's own binaries are left as
  they are (its crash reports may read them); the third-party libraries Ray vendors under
  `thirdparty_files` directories (the runtime-env agent's aiohttp, multidict, ...) are not
  Ray's own and are stripped like the rest;
- with `--link-duplicates ROOT`, files under ROOT of identical content, mode and owner become
  hard links to one of them (Ray vendors aiohttp, yarl and attrs beside the venv's own
  copies; pip vendors idna and urllib3; JupyterLab's wheel installs its static assets twice,
  under `share/jupyter/lab/static` and `jupyterlab/static`; licenses repeat): a layer stores
  a hard link's content once. Only files this layer wrote may be linked: linking to a file of
  a lower layer would copy that file up into this one. So a later layer first lists the
  files it found (`--list ROOT LIST`, before its install) and passes that list
  (`--except-listed LIST`): no listed path is linked or linked to. The venv's bytecode is
  checked-hash, so no .pyc depends on a source's modification time, which linked files share.

Nothing it touches is rewritten unless it changes: in a later layer, an untouched file is
not copied up. A run over a tree it already trimmed changes nothing.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import stat
import struct
import sys
from pathlib import Path

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, little-endian
PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr
SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
E_SHOFF = 0x28  # offset of e_shoff in Elf64_Ehdr
SHT_NULL, SHT_RELA, SHT_NOBITS, SHT_REL = 0, 4, 8, 9
SHF_ALLOC = 0x2
# Shdr fields by index
NAME, TYPE, FLAGS, OFFSET, SIZE, INFO, ALIGN = 0, 1, 2, 4, 5, 7, 8


def strip_debug(data: bytes) -> bytes | None:
    """`data` without the contents of its `.debug_*` sections (and of relocations that apply
    to them), or None when there are none or the file is not a 64-bit little-endian ELF this
    can rewrite safely.

    What the loader maps (everything up to the end of the last segment and of the last
    allocated section) is kept byte for byte. The sections after it that no segment maps
    (symbols, strings, notes, `.comment`) are packed one after the other, the debug ones left
    empty, and the section header table follows. Section indices do not change, so the symbol
    tables and every link between sections stay valid.
    """
    if len(data) < EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    (_, _, _, _, _, phoff, shoff, _, ehsize, phentsize, phnum, shentsize, shnum, shstrndx) = (
        EHDR.unpack_from(data, 0)
    )
    if not shoff or not shnum or shentsize != SHDR.size or shstrndx >= shnum:
        return None  # no section table, or extended numbering: leave the file alone
    if phnum and phentsize != PHDR.size:
        return None
    if shoff + shnum * SHDR.size > len(data) or phoff + phnum * PHDR.size > len(data):
        return None
    sections = [list(SHDR.unpack_from(data, shoff + i * SHDR.size)) for i in range(shnum)]
    names = data[sections[shstrndx][OFFSET] : sections[shstrndx][OFFSET] + sections[shstrndx][SIZE]]

    def name(s: list[int]) -> bytes:
        end = names.find(b"\0", s[NAME])
        return names[s[NAME] : end if end >= 0 else len(names)]

    def mapped(s: list[int]) -> bool:
        return bool(s[FLAGS] & SHF_ALLOC)

    def stored(s: list[int]) -> bool:
        return s[TYPE] not in (SHT_NULL, SHT_NOBITS)

    debug = {
        i
        for i, s in enumerate(sections)
        if name(s).startswith((b".debug", b".zdebug")) and stored(s) and not mapped(s) and s[SIZE]
    }
    debug |= {
        i
        for i, s in enumerate(sections)
        if s[TYPE] in (SHT_REL, SHT_RELA) and not mapped(s) and s[INFO] in debug and s[SIZE]
    }
    if not debug:
        return None
    ends = [ehsize, phoff + phnum * phentsize]
    for i in range(phnum):
        p = PHDR.unpack_from(data, phoff + i * phentsize)
        ends.append(p[2] + p[5])  # p_offset + p_filesz
    ends += [s[OFFSET] + s[SIZE] for s in sections if mapped(s) and stored(s)]
    end = max(ends)
    tail = [i for i, s in enumerate(sections) if stored(s) and not mapped(s)]
    if any(sections[i][OFFSET] < end for i in tail):
        return None  # unmapped content interleaved with mapped content: not rewritten
    if any(sections[i][OFFSET] + sections[i][SIZE] > len(data) for i in tail):
        return None
    out = bytearray(data[:end])
    for i in sorted(tail, key=lambda i: sections[i][OFFSET]):
        s = sections[i]
        if i in debug:
            s[OFFSET], s[SIZE] = len(out), 0
            continue
        out += b"\0" * (-len(out) % max(s[ALIGN], 1))
        content = data[s[OFFSET] : s[OFFSET] + s[SIZE]]
        s[OFFSET] = len(out)
        out += content
    out += b"\0" * (-len(out) % 8)
    struct.pack_into("<Q", out, E_SHOFF, len(out))
    for s in sections:
        out += SHDR.pack(*s)
    return bytes(out)


class Tally:
    """Paths removed (files, or directories for `tests` and `ray/jars`; ELF files stripped;
    files linked) and bytes freed, by kind, for the build log."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[int]] = {}
        self.verbs: dict[str, str] = {}

    def add(self, kind: str, nbytes: int, verb: str = "removed") -> None:
        entry = self.kinds.setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += nbytes
        self.verbs[kind] = verb

    def report(self) -> str:
        return "; ".join(
            f"{kind}: {n} {self.verbs[kind]}, {b / 1e6:.1f} MB"
            for kind, (n, b) in sorted(self.kinds.items())
        )


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def remove_tree(path: Path, kind: str, tally: Tally) -> None:
    tally.add(kind, tree_size(path))
    shutil.rmtree(path)


def remove_file(path: Path, kind: str, tally: Tally) -> None:
    tally.add(kind, path.stat().st_size)
    path.unlink()


def other_seed_wheels(site: Path) -> list[Path]:
    """virtualenv's bundled seed wheels that no Python but another version's would take."""
    embed = site / "virtualenv" / "seed" / "wheels" / "embed"
    if not embed.is_dir():
        return []
    support = None
    tree = ast.parse((embed / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:  # read, not imported: importing would run virtualenv's code
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets: list[ast.expr] = [node.target]
            value = node.value
        elif isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "BUNDLE_SUPPORT" for t in targets):
            support = ast.literal_eval(value)
    if not isinstance(support, dict):
        return []  # a virtualenv without that table: keep every wheel
    mine = support.get("%d.%d" % sys.version_info[:2])  # noqa: UP031
    if not mine:
        return []
    keep = set(mine.values())
    return sorted(p for p in embed.glob("*.whl") if p.name not in keep)


def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


# Binaries no Linux process loads, by suffix, each with the first bytes it must start with.
PE = (b"MZ",)  # Windows executables and libraries (a .pyd is a DLL)
FOREIGN = {
    ".exe": PE,
    ".dll": PE,
    ".pyd": PE,
    ".pdb": (b"Microsoft C/C++ MSF 7.00\r\n", b"Microsoft C/C++ program database 2.00\r\n"),
    # Mach-O: 32/64-bit either byte order, and universal ("fat") files
    ".dylib": tuple(
        bytes.fromhex(m) for m in ("feedface", "feedfacf", "cefaedfe", "cffaedfe", "cafebabe")
    ),
}


def is_foreign_binary(path: Path) -> bool:
    """Whether `path` is a Windows or macOS binary: its suffix says so and its first bytes
    agree (a file merely named like one is kept)."""
    magics = FOREIGN.get(path.suffix.lower())
    if not magics:
        return False
    with path.open("rb") as f:
        head = f.read(max(len(m) for m in magics))
    return head.startswith(magics)


# Directories in which Ray vendors other projects' packages (and their binaries).
VENDORED = frozenset({"thirdparty_files", "thirdparty"})


def rays_own(site: Path, here: Path) -> bool:
    """Whether files in directory `here` are Ray's own (under `ray/`, not vendored)."""
    try:
        parts = here.relative_to(site).parts
    except ValueError:
        return False
    return parts[:1] == ("ray",) and not VENDORED.intersection(parts)


def trim(site: Path, link_root: Path | None = None, lower: frozenset[str] = frozenset()) -> Tally:
    """One walk of `site`: `tests` directories are removed as they are met (and not walked
    into), Windows and macOS binaries removed, third-party ELF files stripped; then, if
    `link_root` is given, identical files under it linked, except the paths in `lower`
    (relative to `link_root`: the files of lower layers)."""
    tally = Tally()
    jars = site / "ray" / "jars"
    if jars.is_dir():
        remove_tree(jars, "ray/jars", tally)
    galata = site / "jupyterlab" / "galata"
    if galata.is_dir():
        remove_tree(galata, "JupyterLab's UI-test extension", tally)
    dashboard = site / "ray" / "dashboard"
    for source_map in sorted(dashboard.rglob("*.map")) if dashboard.is_dir() else []:
        remove_file(source_map, "source maps", tally)
    for wheel in other_seed_wheels(site):
        remove_file(wheel, "seed wheels for other Pythons", tally)
    for root, dirs, files in os.walk(site):  # symlinked directories are not followed
        here = Path(root)
        for name in sorted(d for d in dirs if d == "tests" and not (here / d).is_symlink()):
            remove_tree(here / name, "tests", tally)
            dirs.remove(name)
        dirs.sort()
        for name in sorted(files):
            path = here / name
            if path.is_symlink():
                continue
            if is_foreign_binary(path):
                remove_file(path, "Windows and macOS binaries", tally)
            elif not rays_own(site, here):
                strip_file(path, tally)
    if link_root is not None:
        link_identical(link_root, tally, lower)
    return tally


def regular_files(root: Path) -> dict[str, os.stat_result]:
    """The regular files under `root` (symlinked directories are not followed), by path
    relative to it, in walk order, with their `lstat`."""
    found: dict[str, os.stat_result] = {}
    for here, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(here) / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                found[path.relative_to(root).as_posix()] = st
    return found


def link_identical(root: Path, tally: Tally, lower: frozenset[str] = frozenset()) -> None:
    """Make each set of non-empty regular files under `root` with the same content, mode and
    owner hard links to the first of them by path (already linked files stay as they are);
    the paths in `lower` are neither linked nor linked to."""
    by_shape: dict[tuple[int, int, int, int], list[Path]] = {}
    for rel, st in regular_files(root).items():
        if rel not in lower and st.st_size:
            by_shape.setdefault((st.st_size, st.st_mode, st.st_uid, st.st_gid), []).append(
                root / rel
            )
    for (size, *_), paths in by_shape.items():
        if len(paths) < 2:
            continue
        first: dict[bytes, Path] = {}
        for path in paths:
            digest = hashlib.sha256(path.read_bytes()).digest()
            keep = first.setdefault(digest, path)
            if keep is path or os.path.samefile(keep, path):
                continue
            tmp = path.with_name(path.name + ".trim-link")
            tmp.unlink(missing_ok=True)
            os.link(keep, tmp)
            os.replace(tmp, path)
            tally.add("duplicate files", size, "linked")


def strip_file(path: Path, tally: Tally) -> None:
    """Empty the debug sections of an ELF file in place (owner, mode and links stay); any
    other file, or an ELF file with nothing to strip, is not opened for writing."""
    if path.stat().st_size < EHDR.size or not is_elf(path):
        return
    data = path.read_bytes()
    stripped = strip_debug(data)
    if stripped is None:
        return
    with path.open("r+b") as f:
        f.write(stripped)
        f.truncate()
    tally.add("debug sections", len(data) - len(stripped), "stripped")


USAGE = """usage: python trim.py [--link-duplicates ROOT [--except-listed LIST]] SITE_PACKAGES_DIR
       python trim.py --list ROOT LIST"""


def main(argv: list[str]) -> int:
    args = argv[1:]
    if args[:1] == ["--list"] and len(args) == 3 and Path(args[1]).is_dir():
        root, out = Path(args[1]), Path(args[2])
        out.write_bytes(b"".join(os.fsencode(p) + b"\0" for p in regular_files(root)))
        return 0
    options: dict[str, Path] = {}
    while len(args) > 2 and args[0] in ("--link-duplicates", "--except-listed"):
        options[args[0]] = Path(args[1])
        args = args[2:]
    link_root, listed = options.get("--link-duplicates"), options.get("--except-listed")
    if (
        len(args) != 1
        or not Path(args[0]).is_dir()
        or (link_root is not None and not link_root.is_dir())
        or (listed is not None and (link_root is None or not listed.is_file()))
    ):
        print(USAGE, file=sys.stderr)
        return 2
    lower = frozenset(
        os.fsdecode(p) for p in (listed.read_bytes().split(b"\0") if listed else []) if p
    )
    if listed is not None and not lower:
        # an empty list would let every lower file be linked, and so copied up
        print(
            f"trim.py: {listed} lists no file: write it with --list before the install",
            file=sys.stderr,
        )
        return 2
    site = Path(args[0])
    tally = trim(site, link_root=link_root, lower=lower)
    print(f"trim {site}: {tally.report() or 'nothing to remove'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
