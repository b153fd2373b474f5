#!/usr/bin/env python3
"""N concurrent listeners on one Icecast audio mount, first all on the master, then split over master and relay.

Needs the icecast_gstreamer scenario's containers converged (molecule converge -s icecast_gstreamer).
Every listener is an asyncio TCP client in this process (a separate process from Icecast) that
sends a plain HTTP GET for the mount and counts the bytes it receives during its own window of
DURATION seconds from its 200 OK. Expected bytes = Icecast's burst (sent at once on connect) + the
mount's nominal bitrate / 8 x that window. For each N it
reports: listeners that got at least 95 % of the expected bytes, delivered / expected over all
listeners, and each Icecast's CPU (utime+stime over the window, from /proc) and resident memory.

Usage: benchmarks/icecast/run.py [--sizes 100,500,1000,2000] [--duration 60] [--mount /audio.ogg]
       [--bitrate 64000]
Prints a Markdown table; raw figures go to benchmarks/icecast/last-run.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import time
from pathlib import Path

MASTER = "icecast_gstreamer-master"
RELAY = "icecast_gstreamer-relay"
PORT = 8000
# Icecast 2.4 listens with a backlog of 5 (ICECAST_LISTEN_QUEUE): a burst of connections beyond what
# its accept thread takes at once loses SYNs, which the kernel retries 1, 3, 7, 15 s later. Listeners
# therefore arrive at RAMP_BATCH per RAMP_PAUSE (100/s), and each one's window starts at its 200 OK.
RAMP_BATCH = 10
RAMP_PAUSE = 0.1
CONNECT_TIMEOUT = 60


def address_of(container: str) -> str:
    out = subprocess.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", container],
                         check=True, capture_output=True, text=True).stdout
    return next(n["IPAddress"] for n in json.loads(out).values() if n.get("IPAddress"))


def icecast_sample(container: str) -> tuple[float, int]:
    """(CPU seconds used so far, resident KiB) of the container's icecast2 process."""
    script = ("pid=$(systemctl show -p MainPID --value icecast2); "
              "awk '{print $14+$15}' /proc/$pid/stat; awk '/VmRSS/{print $2}' /proc/$pid/status; getconf CLK_TCK")
    ticks, rss, hz = subprocess.run(["docker", "exec", container, "sh", "-c", script],
                                    check=True, capture_output=True, text=True).stdout.split()
    return int(ticks) / int(hz), int(rss)


async def listener(address: str, mount: str, duration: float) -> tuple[int, float, float]:
    """Bytes received, window length (s) and time to the 200 OK (s) of one listener; 0 bytes when refused."""
    started = time.monotonic()
    received = 0
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, PORT), CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return 0, duration, CONNECT_TIMEOUT
    answered = CONNECT_TIMEOUT
    try:
        writer.write(f"GET {mount} HTTP/1.0\r\nHost: {address}\r\nUser-Agent: streamcloud-bench\r\n\r\n".encode())
        await writer.drain()
        header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
        if b" 200 " not in header.split(b"\r\n", 1)[0]:
            return 0, duration, answered
        answered = time.monotonic() - started
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            received += len(chunk)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()
    return received, duration, answered


async def crowd(targets: list[str], count: int, mount: str, duration: float) -> list[tuple[int, float, float]]:
    tasks = []
    for index in range(count):
        tasks.append(asyncio.create_task(listener(targets[index % len(targets)], mount, duration)))
        if (index + 1) % RAMP_BATCH == 0:
            await asyncio.sleep(RAMP_PAUSE)
    return await asyncio.gather(*tasks)


def measure(label: str, targets: dict[str, str], count: int, mount: str, duration: float, bitrate: int,
            burst: int) -> dict:
    before = {name: icecast_sample(name) for name in targets}
    wall = time.monotonic()
    results = asyncio.run(crowd(list(targets.values()), count, mount, duration))
    wall = time.monotonic() - wall
    after = {name: icecast_sample(name) for name in targets}
    expected = [burst + bitrate / 8 * window for _, window, _ in results]
    delivered = sum(b for b, _, _ in results)
    good = sum(1 for (b, _, _), e in zip(results, expected, strict=True) if b >= 0.95 * e)
    waits = sorted(w for _, _, w in results)
    return {
        "label": label, "listeners": count, "duration": duration, "wall": round(wall, 1),
        "good": good, "good_share": round(good / count, 4),
        "delivered_bytes": delivered, "expected_bytes": int(sum(expected)),
        "delivered_ratio": round(delivered / sum(expected), 4),
        "min_ratio": round(min(b / e for (b, _, _), e in zip(results, expected, strict=True)), 4),
        "refused": sum(1 for b, _, _ in results if b == 0),
        "connect_p50_s": round(waits[len(waits) // 2], 2), "connect_max_s": round(waits[-1], 2),
        "icecast": {name: {"cpu_percent": round(100 * (after[name][0] - before[name][0]) / wall, 1),
                           "rss_mib": round(after[name][1] / 1024, 1)} for name in targets},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,500,1000,2000")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--mount", default="/audio.ogg")
    parser.add_argument("--bitrate", type=int, default=64000, help="the mount's nominal bitrate (bit/s)")
    parser.add_argument("--burst", type=int, default=65536, help="Icecast's burst-size: sent at once on connect")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) + 64 > hard:
        raise SystemExit(f"open-file limit {hard} is below {max(sizes)} listeners")
    master, relay = address_of(MASTER), address_of(RELAY)
    runs = []
    for count in sizes:
        for label, targets in (("master", {MASTER: master}), ("master+relay", {MASTER: master, RELAY: relay})):
            print(f"== {count} listeners on {label} {time.strftime('%H:%M:%S', time.gmtime())} UTC "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            run = measure(label, targets, count, args.mount, args.duration, args.bitrate, args.burst)
            run["load_before"] = round(os.getloadavg()[0], 1)
            runs.append(run)
            print(json.dumps(run), flush=True)
            time.sleep(5)  # let Icecast close the previous crowd's connections
    Path(__file__).with_name("last-run.json").write_text(json.dumps(runs, indent=1) + "\n")
    print("\n| listeners | where | >= 95 % of bytes | delivered / expected | worst listener "
          "| time to 200 OK p50 / max | Icecast CPU | Icecast RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        cpu = " + ".join(f"{v['cpu_percent']} %" for v in run["icecast"].values())
        rss = " + ".join(f"{v['rss_mib']} MiB" for v in run["icecast"].values())
        print(f"| {run['listeners']} | {run['label']} | {run['good']} ({100 * run['good_share']:.1f} %) | "
              f"{run['delivered_ratio']:.3f} | {run['min_ratio']:.3f} | "
              f"{run['connect_p50_s']} / {run['connect_max_s']} s "
              f"| {cpu} | {rss} |")


if __name__ == "__main__":
    main()
