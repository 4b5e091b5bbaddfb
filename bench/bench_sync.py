"""Registry sync benchmarks, each against its baseline in the same run (as root):

(a) bytes sent for a 10 MiB change on a cache of --size, against a full `tar | zstd` of the cache;
(b) cold-node restore of a --size cache in 8 layers, against `buildah pull` of the same image;
(c) push throughput and peak memory of `cachesync sync --once`, against `skopeo copy` of the same
    image from buildah storage to the registry.

    .venv/bin/python bench/bench_sync.py [--size 1G] [--keep]

A local docker-registry on 127.0.0.1 (random port, temporary storage) and temporary node roots.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from cachesync import pull, settings as settings_mod, sync  # noqa: E402
from cachesync.names import CacheRef  # noqa: E402
from cachesync.node import Node  # noqa: E402
from cachesync.settings import parse_size  # noqa: E402
from registry_fixtures import LocalRegistry, commit_generation  # noqa: E402

MiB = 1024 * 1024


def data(n: int) -> bytes:
    """Half random, half repetitive text: roughly what build caches compress like."""
    return os.urandom(n // 2) + (b"org.example.dependency:artifact:1.0.0 sha1=0123456789abcdef\n"
                                 * (n // 2 // 60 + 1))[: n - n // 2]


def files(total: int, prefix: str, per_file: int = 16 * MiB) -> dict[str, bytes]:
    out, i = {}, 0
    while total > 0:
        n = min(per_file, total)
        out[f"{prefix}/f{i:04d}.bin"] = data(n)
        total -= n
        i += 1
    return out


def node(base: Path, name: str, reg: LocalRegistry, prefix: str) -> Node:
    s = settings_mod.Settings(root=base / name, node_id=name,
                              registry=reg.settings(prefix=prefix, timeout=60.0))
    return Node.open(s)


def timed(argv: list[str], env: dict | None = None) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of a command, via /usr/bin/time."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True,
                       env=env)
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {p.stderr[-1500:]}")
    return time.monotonic() - t0, int(p.stderr.strip().splitlines()[-1])


def bench_a(base: Path, reg: LocalRegistry, size: int) -> None:
    a = node(base, "a1", reg, "bench-a")
    ref = CacheRef("bench", "delta")
    commit_generation(a, ref, files(size, "deps"))
    assert sync.run_once(a).ok
    e2 = commit_generation(a, ref, files(10 * MiB, "changed"))
    r = sync.run_once(a)
    assert r.ok, r.summary()
    sent = r.published[0].bytes_sent
    name = "bench-tar"
    a.buildah.from_image(ref.local_image(e2.tag), name)
    try:
        merged = a.buildah.mount(name)
        tar = subprocess.Popen(["tar", "-C", str(merged), "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        z = subprocess.run(["zstd", "-q", "-T0", "-3", "-c"], stdin=tar.stdout,
                           capture_output=True)
        tar.wait()
        full = len(z.stdout)
    finally:
        a.buildah.umount(name)
        a.buildah.rm(name)
    print(f"(a) 10 MiB change on a {size / MiB:.0f} MiB cache: cachesync sent {sent / MiB:.1f} MiB,"
          f" full tar|zstd {full / MiB:.1f} MiB -> {full / max(sent, 1):.1f}x less")


def bench_b(base: Path, reg: LocalRegistry, size: int) -> None:
    a = node(base, "a2", reg, "bench-b")
    ref = CacheRef("bench", "restore")
    for i in range(8):
        commit_generation(a, ref, files(size // 8, f"layer{i}"))
    assert sync.run_once(a).ok
    b = node(base, "b2", reg, "bench-b")
    t0 = time.monotonic()
    w = pull.warm(b, ref)
    ours = time.monotonic() - t0
    assert w.ok and w.fetched_layers == 8, w.summary()
    c = node(base, "c2", reg, "bench-b")
    image = f"{reg.host}/bench-b/bench/restore:latest"
    t0 = time.monotonic()
    c.buildah.pull(image, tls_verify=False)
    theirs = time.monotonic() - t0
    print(f"(b) cold restore of {size / MiB:.0f} MiB in 8 layers: cachesync warm {ours:.2f} s, "
          f"buildah pull {theirs:.2f} s -> {theirs / ours:.2f}x")


def bench_c(base: Path, reg: LocalRegistry, size: int) -> None:
    a = node(base, "a3", reg, "bench-c")
    ref = CacheRef("bench", "push")
    e = commit_generation(a, ref, files(size, "big"))
    env = {**os.environ, "CACHESYNC_ROOT": str(a.state.root), "CACHESYNC_NODE_ID": "a3",
           "CACHESYNC_REGISTRY": f"{reg.host}/bench-c", "CACHESYNC_INSECURE": "true"}
    ours, our_rss = timed([sys.executable, "-m", "cachesync.cli", "sync", "--once"], env)
    theirs, their_rss = timed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                               "--dest-compress-format", "zstd",
                               a.buildah.storage_transport + ref.local_image(e.tag),
                               f"docker://{reg.host}/bench-c-skopeo/push:{e.tag}"])
    mb = size / MiB
    print(f"(c) first push of {mb:.0f} MiB (export, zstd, upload): "
          f"cachesync {mb / ours:.0f} MiB/s, "
          f"peak {our_rss / 1024:.0f} MiB RSS; skopeo copy {mb / theirs:.0f} MiB/s, peak "
          f"{their_rss / 1024:.0f} MiB RSS -> throughput {theirs / ours:.2f}x, memory "
          f"{our_rss / their_rss:.2f}x of skopeo's")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1G", help="cache size (default 1G; e.g. 256M)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_sync: run as root", file=sys.stderr)
        return 2
    size = parse_size(args.size)
    base = Path(tempfile.mkdtemp(prefix="cachesync-bench-", dir="/var/tmp"))
    reg = LocalRegistry(base / "registry").start()
    try:
        bench_a(base, reg, size)
        bench_b(base, reg, size)
        bench_c(base, reg, size)
    finally:
        reg.stop()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(base))]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
