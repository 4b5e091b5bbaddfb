"""Volume setup time on a node holding a large cache, against `cp -a` of the same data.

    .venv/bin/python bench/bench_setup.py              # 1 GiB over ~2000 files
    .venv/bin/python bench/bench_setup.py --size 64Mi  # a quick run

Builds the cache once (one commit), then sets up and tears down volumes of it several times:
the setup time (in process, and end to end through the `cachesync` CLI as a helper Pod runs it)
is the median. Exits 1 if the median end-to-end setup is not well under a second (--limit).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cachesync import mounts, records, settings as settings_mod, volume  # noqa: E402 (path)
from cachesync.node import Node  # noqa: E402
from cachesync.settings import parse_size  # noqa: E402

CLI = ROOT / ".venv" / "bin" / "cachesync"


def make_data(target: Path, size: int, files: int) -> int:
    """``files`` files of random bytes, ``size`` bytes in all, spread over 20 directories."""
    per_file = max(1, size // files)
    chunk = os.urandom(1 << 20)   # 1 MiB of randomness, rotated per file: fast, not compressible
    written = 0
    for i in range(files):
        d = target / f"d{i % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"f{i:05d}.bin", "wb") as f:
            left, offset = per_file, (i * 4099) % len(chunk)
            while left:
                piece = chunk[offset:offset + left] or chunk[:left]
                f.write(piece)
                left -= len(piece)
                offset = 0
        written += per_file
    return written


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1Gi", help="cache size (default 1Gi)")
    ap.add_argument("--files", type=int, default=2000, help="number of files (default 2000)")
    ap.add_argument("--runs", type=int, default=7, help="setups to time (default 7)")
    ap.add_argument("--limit", type=float, default=0.5,
                    help="fail if the median end-to-end setup takes longer (seconds, default 0.5)")
    ap.add_argument("--dir", default="/var/tmp", help="where to put the scratch node root")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_setup: needs root (mounts, buildah)", file=sys.stderr)
        return 2
    size = parse_size(args.size, "--size")

    work = Path(tempfile.mkdtemp(prefix="cachesync-bench-", dir=args.dir))
    node = Node.open(settings_mod.Settings(root=work / "node", node_id="bench"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CACHESYNC_ROOT": str(node.state.root),
           "CACHESYNC_NODE_ID": "bench", "PVC_NAMESPACE": "bench", "PVC_NAME": "data"}

    def spec(name: str, write: bool = False) -> volume.VolumeSpec:
        return volume.VolumeSpec.from_inputs({
            "vol_name": name, "vol_dir": str(work / "vols" / name), "pvc_namespace": "bench",
            "pvc_name": "data", "cache_write": "true" if write else "false"})

    try:
        src = work / "src"
        t = time.perf_counter()
        written = make_data(src, size, args.files)
        print(f"data: {written / 2**20:.0f} MiB in {args.files} files "
              f"({time.perf_counter() - t:.1f}s to write)")

        seed = spec("seed", write=True)
        volume.setup(node, seed)
        t = time.perf_counter()
        subprocess.run(["cp", "-a", f"{src}/.", str(seed.vol_dir)], check=True)
        result = volume.teardown(node, seed, "succeeded")
        print(f"cache: {result.summary()} ({time.perf_counter() - t:.1f}s to fill and commit)")

        in_process, end_to_end = [], []
        for i in range(args.runs):
            s = spec(f"run-{i}")
            in_process.append(timed(lambda: volume.setup(node, s)))
            assert (s.vol_dir / "d00" / "f00000.bin").stat().st_size == written // args.files
            volume.teardown(node, s, "succeeded")
        for i in range(args.runs):
            s = spec(f"cli-{i}")
            cli_env = {**env, "VOL_NAME": s.vol_name, "VOL_DIR": str(s.vol_dir)}
            end_to_end.append(timed(lambda: subprocess.run(
                [str(CLI), "helper", "setup"], env=cli_env, check=True, capture_output=True)))
            volume.teardown(node, s, "succeeded")

        copies = []
        for i in range(3):
            dst = work / f"copy-{i}"
            copies.append(timed(lambda: subprocess.run(["cp", "-a", str(src), str(dst)],
                                                       check=True)))
            shutil.rmtree(dst)

        setup_s, cli_s, cp_s = (statistics.median(x) for x in (in_process, end_to_end, copies))
        print(f"setup (in process), median of {args.runs}: {setup_s * 1000:.0f} ms")
        print(f"setup (cachesync helper setup), median of {args.runs}: {cli_s * 1000:.0f} ms")
        print(f"cp -a of the same data, median of 3: {cp_s * 1000:.0f} ms")
        print(f"ratio cp -a / setup: {cp_s / cli_s:.1f}x (end to end), "
              f"{cp_s / setup_s:.1f}x (in process)")
        if cli_s >= args.limit:
            print(f"FAIL: setup takes {cli_s:.3f}s, limit {args.limit}s", file=sys.stderr)
            return 1
        print(f"OK: setup well under a second (limit {args.limit}s)")
        return 0
    finally:
        for rec in records.load_all(node.state):   # volumes a failure left set up
            volume.teardown(node, volume.VolumeKey(rec.vol_name), "failed")
        mounts.unmount_all(work)
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
