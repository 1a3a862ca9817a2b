"""A mutation fuzzer for convkit's loaders, every case in a memory- and time-limited child.

A *target* is one loader: its seed files (valid inputs), how to mutate them, and the call
that loads one file. Targets live in :data:`TARGETS`; :func:`register` adds one (a new
loader plugs in with a seed builder and a ``"module:function"`` load call)::

    register(Target("keras-model", ".keras", seeds=keras_zip_seeds,
                    load="tests.fuzz.targets:load_keras_model"))

:func:`run` writes ``cases`` mutated files per target, loads them in child processes (a
batch of cases per child, to pay Python's start-up once; ``RLIMIT_AS`` caps the child's
address space and a per-case alarm its time) and counts the outcomes:

``clean``     a :class:`~convkit.errors.ConvkitError` (``FileFormatError``, ``ShapeError``)
``loaded``    the file loaded
``rejected``  a third-party reader refused the file before convkit saw it (only targets
              that go through one, e.g. ``torch.load``)
``other``     any other exception, ``MemoryError`` included (must be 0)
``timeout``   over the per-case time (must be 0)
``crash``     the child died (must be 0)

and the peak of traced memory (Python objects and NumPy arrays, by ``tracemalloc``) of each
case against the file's size. ``python -m tests.fuzz.run`` prints the table.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTCOMES = ("clean", "loaded", "rejected", "other", "timeout", "crash")
#: address space a child may use on top of what it has after imports (bytes)
MEMORY_HEADROOM = 1536 << 20
#: a case's traced peak may not exceed this constant plus MEMORY_PER_BYTE x its size
MEMORY_CONSTANT = 16 << 20
MEMORY_PER_BYTE = 64
#: a child that prints nothing for this long plus six times the per-case time is killed (a
#: case stuck inside one C call, where the child's alarm cannot reach); its case: timeout
QUIET_SECONDS = 30.0


@dataclasses.dataclass
class Target:
    """One loader under test.

    ``seeds(workdir)`` returns a list of valid files as bytes; ``load`` names the function
    ``f(path)`` that loads one (``"module:function"``, imported in the child);
    ``mutators`` are functions ``(data: bytes, rng: random.Random) -> bytes``, picked at
    random per case; ``fast`` says whether the target runs in the quick test-suite run.
    """
    name: str
    suffix: str
    seeds: object
    load: str
    mutators: tuple = ()
    fast: bool = True
    available: object = None         # () -> bool; False skips the target

    def is_available(self) -> bool:
        return self.available is None or bool(self.available())


TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    TARGETS[target.name] = target
    return target


# ============================================================================ mutators
_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFE, 0x40, 0x20]


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 16))):
        position = rng.randrange(len(buffer))
        buffer[position] ^= 1 << rng.randrange(8)
    return bytes(buffer)


def set_bytes(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.choice((1, 2, 8))):
        position = rng.randrange(len(buffer))
        width = rng.choice((1, 2, 4, 8))
        value = rng.choice((0, 0xFF, rng.randrange(256), rng.choice(_INTERESTING)))
        buffer[position:position + width] = bytes([value]) * width
    return bytes(buffer[:len(data)])


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def splice(data: bytes, rng: random.Random) -> bytes:
    """Copy a chunk of the file over another place, or insert or delete one."""
    start, length = rng.randrange(len(data)), rng.randrange(1, 256)
    chunk = data[start:start + length]
    where = rng.randrange(len(data))
    kind = rng.randrange(3)
    if kind == 0:
        return data[:where] + chunk + data[where:]
    if kind == 1:
        return data[:where] + data[where + length:]
    return data[:where] + chunk + data[where + len(chunk):]


def big_integers(data: bytes, rng: random.Random) -> bytes:
    """Overwrite an aligned 4- or 8-byte word with a huge or negative number (sizes,
    offsets and shapes in binary headers)."""
    buffer = bytearray(data)
    width = rng.choice((4, 8))
    position = rng.randrange(0, max(len(buffer) - width, 1), width)
    top = 2 ** (8 * width)
    value = rng.choice((top - 1, top // 2, 2 ** 31, 2 ** 40 % top, rng.randrange(top)))
    buffer[position:position + width] = value.to_bytes(width, "little")
    return bytes(buffer)


BYTE_MUTATORS = (flip_bits, set_bytes, truncate, splice, big_integers)


# ---------------------------------------------------------------------------- JSON values
_HOSTILE_VALUES = [None, True, -1, 0, 2 ** 31, 2 ** 63, 10 ** 30, -(2 ** 63), 1e308,
                   float("nan"), float("inf"), "", "x" * 1000, [], {}, [[]], {"a": {}},
                   [1, 2, 3], "../../etc/passwd", "__import__('os')", 1.5]


def _hostile_value(rng: random.Random):
    """A fresh copy of one of :data:`_HOSTILE_VALUES`: the lists and dicts among them must
    not be shared between documents, or later mutations (an item duplicated in place) would
    grow them across cases until one document serialises to gigabytes."""
    return copy.deepcopy(rng.choice(_HOSTILE_VALUES))


def _nested_list(depth: int) -> str:
    """A placeholder that :func:`dumps` writes as ``depth`` nested lists (too deep for
    Python's own encoder)."""
    return f"__DEEP_{depth}__"


def dumps(document) -> bytes:
    """JSON text of a mutated document, with the deep-nesting placeholders expanded."""
    text = json.dumps(document)
    for depth in (100, 900, 5000):
        text = text.replace(f'"{_nested_list(depth)}"', "[" * depth + "]" * depth)
    return text.encode()


def mutate_json_value(document, rng: random.Random):
    """One random change somewhere in parsed JSON: replace a value (hostile numbers, types,
    deep nesting), delete a key, or duplicate a list item. Returns the new document."""
    paths = []
    stack = [((), document)]
    while stack:
        path, item = stack.pop()
        paths.append(path)
        if isinstance(item, dict):
            stack.extend((path + (key,), value) for key, value in item.items())
        elif isinstance(item, list):
            stack.extend((path + (index,), value) for index, value in enumerate(item))
    path = rng.choice(paths[1:] or paths)
    if not path:
        return _hostile_value(rng)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = rng.randrange(6)
    if action == 0 and isinstance(parent, dict):
        del parent[key]
    elif action == 1 and isinstance(parent, list):
        parent.insert(key, parent[key])
    elif action == 2:
        parent[key] = _nested_list(rng.choice((100, 900, 5000)))
    elif action == 3 and type(parent[key]) in (int, float):
        parent[key] = rng.choice((parent[key] * 10 ** rng.randrange(1, 12), -parent[key] - 1,
                                  2 ** 40, float("nan")))
    else:
        parent[key] = _hostile_value(rng)
    return document


# ---------------------------------------------------------------------------- zip members
def _zip_members(data: bytes) -> list:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _rezip(members, compress_types=None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (info, content) in enumerate(members):
            new = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            new.compress_type = (compress_types or {}).get(index, info.compress_type)
            archive.writestr(new, content)
    return buffer.getvalue()


def zip_json_member(data: bytes, rng: random.Random) -> bytes:
    """Change one JSON member of a zip (``convkit.json``, ``config.json``) and re-zip it
    with correct CRCs, so the change reaches the loader's own checks."""
    members = _zip_members(data)
    candidates = [i for i, (info, _) in enumerate(members) if info.filename.endswith(".json")]
    if not candidates:
        return flip_bits(data, rng)
    index = rng.choice(candidates)
    info, content = members[index]
    document = json.loads(content)
    for _ in range(rng.choice((1, 1, 2, 3))):
        document = mutate_json_value(document, rng)
    members[index] = (info, dumps(document))
    return _rezip(members)


def zip_npy_member(data: bytes, rng: random.Random) -> bytes:
    """Change the header or data of one ``.npy`` member of a convkit archive and fix its
    checksum in the manifest (declared shapes, dtypes and sizes that lie)."""
    members = _zip_members(data)
    npys = [i for i, (info, _) in enumerate(members) if info.filename.endswith(".npy")]
    metas = [i for i, (info, _) in enumerate(members) if info.filename == "convkit.json"]
    if not npys or not metas:
        return flip_bits(data, rng)
    index = rng.choice(npys)
    info, content = members[index]
    header_end = content.index(b"\n") + 1
    header = content[:header_end]
    choice = rng.randrange(4)
    if choice == 0:            # a shape that claims far more than the data
        header = header.replace(b"'shape': (", b"'shape': (" + str(rng.choice(
            (2 ** 20, 2 ** 31, 2 ** 40))).encode() + b", ", 1)
    elif choice == 1:
        header = header.replace(b"'descr': '<f4'", rng.choice(
            (b"'descr': '|O'", b"'descr': '<f8'", b"'descr': '|V0'", b"'descr': '<U9'")), 1)
    elif choice == 2:
        content = content + bytes(rng.randrange(1, 4096))
    else:
        content = content[:header_end + rng.randrange(max(len(content) - header_end, 1))]
    content = header + content[header_end:] if choice < 2 else content
    members[index] = (info, content)
    meta_info, meta = members[metas[0]]
    document = json.loads(meta)
    for entry in document.get("manifest", []):
        if entry.get("file") == info.filename:
            entry["sha256"] = hashlib.sha256(content).hexdigest()
            if rng.random() < 0.5 and choice == 0:
                entry["shape"] = [2 ** 31] + entry["shape"]
    members[metas[0]] = (meta_info, json.dumps(document).encode())
    return _rezip(members)


def zip_bomb_member(data: bytes, rng: random.Random) -> bytes:
    """Replace one member with a deflated run of zeros (1-17 MiB) or pad a JSON member."""
    members = _zip_members(data)
    index = rng.randrange(len(members))
    info, content = members[index]
    size = rng.choice((1, 4, 17)) << 20
    if info.filename.endswith(".json"):
        members[index] = (info, content + b" " * size)
    else:
        members[index] = (info, content[:128] + bytes(size))
    return _rezip(members, {index: zipfile.ZIP_DEFLATED})


ZIP_MUTATORS = (zip_json_member, zip_json_member, zip_npy_member, zip_bomb_member)


# ---------------------------------------------------------------------------- safetensors
def safetensors_header(data: bytes, rng: random.Random) -> bytes:
    """Change the JSON header of a safetensors file (keeping its length field right)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    for _ in range(rng.choice((1, 2))):
        header = mutate_json_value(header, rng)
    text = dumps(header)
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


# ============================================================================ running
def _mutate(target: Target, seed: bytes, rng: random.Random) -> bytes:
    mutators = target.mutators or BYTE_MUTATORS
    data = seed
    for _ in range(rng.choice((1, 1, 1, 2))):
        mutator = rng.choice(mutators)
        try:
            data = mutator(data, rng) if data else data
        except Exception:  # noqa: BLE001 - an earlier mutation broke the structure
            data = flip_bits(data, rng) if data else data
    return data


def write_cases(target: Target, count: int, seed: int, directory: str) -> list[str]:
    """``count`` mutated files of ``target`` in ``directory`` (the same for the same seed)."""
    rng = random.Random(f"{target.name}:{seed}")
    seeds = target.seeds(directory)
    paths = []
    for index in range(count):
        data = seeds[index % len(seeds)] if index < len(seeds) else \
            _mutate(target, rng.choice(seeds), rng)
        path = os.path.join(directory, f"{target.name}-{index:06d}{target.suffix}")
        with open(path, "wb") as handle:
            handle.write(data)
        paths.append(path)
    return paths


def _run_child(cases: list, case_seconds: float, memory: int, results: dict) -> None:
    """Run ``cases`` (``[(target name, path), ...]``) in children until all have an outcome;
    a child that hangs or dies is replaced, and its current case gets that outcome."""
    pending = list(cases)
    while pending:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump({"cases": pending, "case_seconds": case_seconds, "memory": memory,
                       "loads": {name: TARGETS[name].load for name, _ in pending}}, handle)
            listing = handle.name
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "jax"))
        process = subprocess.Popen([sys.executable, "-m", "tests.fuzz.child", listing],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   cwd=REPO, env=env)
        try:
            out = _read_lines(process, QUIET_SECONDS + case_seconds * 6)
        finally:
            os.unlink(listing)
        started = None
        for line in out:
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record["path"]] = record
                started = None
        done = {path for _, path in pending if path in results}
        if started is not None and started not in results:
            outcome = "timeout" if process.returncode in (-9, None) else "crash"
            results[started] = {"path": started, "outcome": outcome,
                                "error": f"child ended with code {process.returncode}",
                                "peak": 0, "size": os.path.getsize(started), "seconds": 0.0}
            done.add(started)
        elif not done:          # died before its first case: nothing can be learnt by retrying
            for _, path in pending:
                results[path] = {"path": path, "outcome": "crash", "peak": 0, "seconds": 0.0,
                                 "error": f"child ended with code {process.returncode}",
                                 "size": os.path.getsize(path)}
            return
        pending = [(name, path) for name, path in pending if path not in results]


def _read_lines(process, quiet_seconds: float) -> list[str]:
    """The child's output lines as they come; the child is killed when it prints nothing
    for ``quiet_seconds``: a case stuck inside one C call (where the child's own alarm
    cannot reach) ends within a minute, not at the end of a whole batch's budget."""
    import select
    import time
    lines, pending = [], b""
    deadline = time.monotonic() + quiet_seconds
    stream = process.stdout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            process.kill()
            break
        ready, _, _ = select.select([stream], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(stream.fileno(), 1 << 16)
        if not chunk:                               # the child is done (or died)
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines += [line.decode() for line in complete if line]
        deadline = time.monotonic() + quiet_seconds
    stream.close()
    process.wait()
    return lines


def run(names=None, cases: int = 100, seed: int = 0, batch: int = 400, case_seconds=5.0,
        fast_only: bool = False, workers: int = 1, directory: str | None = None) -> dict:
    """Fuzz the targets ``names`` (default: all available) with ``cases`` files each; see
    :func:`run_counts`."""
    chosen = [TARGETS[n] for n in (names or TARGETS)]
    chosen = [t for t in chosen if t.is_available() and (t.fast or not fast_only)]
    return run_counts({t.name: cases for t in chosen}, seed, batch, case_seconds, workers,
                      directory)


def run_counts(counts: dict, seed: int = 0, batch: int = 400, case_seconds: float = 5.0,
               workers: int = 1, directory: str | None = None) -> dict:
    """Fuzz each target of ``counts`` (``{name: number of files}``): the files are written
    to ``directory`` (a temporary one by default), shuffled together, and loaded in
    batches of ``batch`` per child, ``workers`` children at a time. Returns
    ``{target: {"counts": Counter of outcomes, "worst": record, "records": [...]}}``, a
    record being ``{"path", "outcome", "error", "peak", "size", "seconds"}``."""
    from concurrent.futures import ThreadPoolExecutor
    owned = directory is None
    directory = directory or tempfile.mkdtemp(prefix="convkit-fuzz-")
    try:
        all_cases = []
        for name, count in counts.items():
            paths = write_cases(TARGETS[name], count, seed, directory)
            all_cases += [(name, path) for path in paths]
        random.Random(seed).shuffle(all_cases)          # mix targets: equal batch lengths
        batches = [all_cases[i:i + batch] for i in range(0, len(all_cases), batch)]
        results: dict = {}
        memory = _baseline_address_space() + MEMORY_HEADROOM
        with ThreadPoolExecutor(max(1, workers)) as pool:
            list(pool.map(lambda b: _run_child(b, case_seconds, memory, results), batches))
        report = {}
        for name in counts:
            records = [results[p] for target, p in all_cases if target == name]
            worst = max(records, key=lambda r: r["peak"] - MEMORY_PER_BYTE * r["size"])
            report[name] = {"counts": Counter(r["outcome"] for r in records), "worst": worst,
                            "records": records}
        return report
    finally:
        if owned:
            import shutil
            shutil.rmtree(directory, ignore_errors=True)


def _baseline_address_space() -> int:
    """Address space of a Python that imported convkit, h5py and NumPy (measured once, in
    a child), so the limit leaves the same headroom on every machine."""
    code = ("import convkit, numpy, h5py, convkit.io.keras_import\n"
            "print([l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('VmPeak')][0])")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=REPO, check=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=REPO)).stdout
        return int(out.strip()) * 1024
    except (subprocess.SubprocessError, ValueError, OSError):
        return 2 << 30


def over_memory(record: dict) -> bool:
    return record["peak"] > MEMORY_CONSTANT + MEMORY_PER_BYTE * record["size"]


def format_report(report: dict) -> str:
    lines = [f"{'target':<20}" + "".join(f"{o:>9}" for o in OUTCOMES)
             + f"{'mem>lim':>9}  worst peak / its size; loaded: peak per byte, max time"]
    for name, entry in report.items():
        counts, worst = entry["counts"], entry["worst"]
        over = sum(over_memory(r) for r in entry["records"])
        loaded = [r for r in entry["records"] if r["outcome"] == "loaded"]
        per_byte = max((r["peak"] / max(r["size"], 1) for r in loaded), default=0.0)
        slowest = max((r["seconds"] for r in entry["records"]), default=0.0)
        lines.append(f"{name:<20}" + "".join(f"{counts.get(o, 0):>9}" for o in OUTCOMES)
                     + f"{over:>9}  {worst['peak'] / 2**20:.1f} MiB / "
                     f"{worst['size'] / 1024:.1f} KiB; {per_byte:.0f} B/B, {slowest:.2f} s")
        for record in entry["records"]:
            if record["outcome"] in ("other", "timeout", "crash") or over_memory(record):
                lines.append(f"    {record['outcome']}: {os.path.basename(record['path'])}: "
                             f"{record.get('error', '')[:160]}")
    return "\n".join(lines)


def load_function(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


# The standard targets register themselves on import.
from . import targets  # noqa: E402,F401  (registers)
