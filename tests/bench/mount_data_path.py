#!/usr/bin/env python3
"""Focused data-path figures of a mounted file system (shardfs-mount).

  mount_data_path.py DIR [--label NAME] [--size MiB] [--json OUT]

Complements /work/shared/bench/fsbench.py with the figures the mount's data
path work needs, each separately:
  write1m     1 MiB sequential write(2)s of --size MiB (random bytes)  MiB/s
  write_p50, write_p99, write_max
              latency of those write(2)s                              ms
  fsync       the fsync(2) on the same descriptor after them          s
  close       the close(2) after it                                   s
  write_total --size MiB over the writes, the fsync and the close     MiB/s
  write4k     4 KiB sequential writes of 64 MiB, no fsync (one
              write(2) per 4 KiB: per-write overheads)                MiB/s
  read1m      1 MiB sequential read(2)s of that file, checked, page
              cache dropped first                                     MiB/s
  randread    4 KiB random reads for 10 s of that file                IOPS
  smallfile   500 files of 4 KiB, open/write/close                    files/s
  probe       lstat of 500 missing names, 4 times each (a build tool
              or an import search probing for files)                  ops/s
Needs fio; run as root so the page cache can be dropped.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def fio(args):
    out = subprocess.run(["fio", "--output-format=json"] + args, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):])["jobs"][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--label", default="fs")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    res = {}
    work = tempfile.mkdtemp(prefix="datapath.", dir=a.dir)
    big = os.path.join(work, "big")
    common = ["--ioengine=psync", "--verify=crc32c", "--verify_state_save=0"]
    block = os.urandom(1 << 20)
    lat = []
    fd = os.open(big, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    t_start = time.perf_counter()
    for i in range(a.size):
        t0 = time.perf_counter()
        os.write(fd, block[i % 4096:] + block[:i % 4096])
        lat.append(time.perf_counter() - t0)
    t_written = time.perf_counter()
    os.fsync(fd)
    t_synced = time.perf_counter()
    os.close(fd)
    t_closed = time.perf_counter()
    lat.sort()
    res["write1m"] = a.size / (t_written - t_start)
    res["write_p50"] = lat[len(lat) // 2] * 1000
    res["write_p99"] = lat[len(lat) * 99 // 100] * 1000
    res["write_max"] = lat[-1] * 1000
    res["fsync"] = t_synced - t_written
    res["close"] = t_closed - t_synced
    res["write_total"] = a.size / (t_closed - t_start)
    small = os.path.join(work, "small")
    job = fio(["--name=w4k", "--filename=" + small, "--rw=write", "--bs=4k",
               "--size=64M", "--do_verify=0"] + common)
    res["write4k"] = job["write"]["bw_bytes"] / 2**20
    drop_caches()
    t0 = time.perf_counter()
    with open(big, "rb", buffering=0) as f:
        for i in range(a.size):
            if f.read(1 << 20) != block[i % 4096:] + block[:i % 4096]:
                raise SystemExit("mount_data_path: wrong bytes at MiB %d" % i)
    res["read1m"] = a.size / (time.perf_counter() - t0)
    drop_caches()
    job = fio(["--name=rr", "--filename=" + big, "--rw=randread", "--bs=4k",
               "--size=%dM" % a.size, "--ioengine=psync", "--runtime=10",
               "--time_based"])
    res["randread"] = job["read"]["iops"]
    sf = os.path.join(work, "sf")
    os.mkdir(sf)
    payload = os.urandom(4096)
    t0 = time.perf_counter()
    for i in range(500):
        fd = os.open(os.path.join(sf, "f%04d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, payload)
        os.close(fd)
    res["smallfile"] = 500 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(500):
        for _ in range(4):
            try:
                os.lstat(os.path.join(sf, "missing%04d" % i))
            except FileNotFoundError:
                pass
    res["probe"] = 2000 / (time.perf_counter() - t0)
    subprocess.run(["rm", "-rf", work], check=True)
    units = {"write1m": "MiB/s", "write_p50": "ms", "write_p99": "ms", "write_max": "ms",
             "fsync": "s", "close": "s", "write_total": "MiB/s", "write4k": "MiB/s",
             "read1m": "MiB/s", "randread": "IOPS", "smallfile": "files/s",
             "probe": "ops/s"}
    for k, v in res.items():
        print("%-10s %-10s %10.1f %s" % (a.label, k, v, units[k]), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"label": a.label, "results": res}, f, indent=1)


if __name__ == "__main__":
    main()
