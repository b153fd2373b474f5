#!/usr/bin/env python3
"""nginx benchmark: the nginx role's configuration against the distribution's stock configuration.

    .venv/bin/python benchmarks/nginx/run.py [--duration 20] [--rounds 2] [--connections 32]

One container (nginx-bench, 1 CPU, 512 MB) runs both: the role's nginx on 443 and a second nginx
with Debian's stock nginx.conf and default site (SSL lines enabled) on 8443, the same certificate
(from the platform PKI) and the same document root. wrk runs on this machine over HTTPS; the two
configurations alternate in every round (A B, then B A). Workloads:
- static: a 10 KB file, keepalive (wrk's default);
- landing: the landing page, keepalive;
- new-conn: the landing page with `Connection: close`, one TLS handshake per request (wrk does
  not resume sessions: full handshakes);
- s_time new / reuse: `openssl s_time` handshakes per second without and with session resumption.
Prints a Markdown table; raw figures as JSON in benchmarks/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTAINER = "nginx-bench"
PORTS = {"role": 443, "stock": 8443}
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def sh(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, **kwargs)


def dexec(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(["docker", "exec", CONTAINER, *argv], check=check)


def setup(distro: str) -> str:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), BENCH_DISTRO=distro,
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"), ANSIBLE_FORCE_COLOR="false")
    subprocess.run(["ansible-playbook", "-i", str(REPO / "benchmarks" / "nginx" / "inventory.yml"),
                    str(REPO / "benchmarks" / "nginx" / "playbook.yml")],
                   check=True, env=env, stdout=sys.stderr)
    if dexec("test", "-s", "/run/nginx-stock.pid", check=False).returncode != 0:
        dexec("nginx", "-c", "/etc/nginx-stock/nginx.conf")
    out = sh(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", CONTAINER]).stdout
    return next(n["IPAddress"] for n in json.loads(out).values() if n.get("IPAddress"))


def ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * UNITS[unit]


def wrk(url: str, duration: int, connections: int, close: bool) -> dict:
    argv = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--latency", url]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    out = sh(argv).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "90", "99"):
        result[f"p{pct}_ms"] = ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["non2xx"] = int(bad.group(1)) if bad else 0
    result["socket_errors"] = sum(map(int, errors.groups())) if errors else 0
    return result


def s_time(address: str, port: int, duration: int, reuse: bool) -> dict:
    out = sh(["openssl", "s_time", "-connect", f"{address}:{port}", "-new" if not reuse else "-reuse",
              "-time", str(duration)]).stdout
    connections, seconds = re.search(r"(\d+) connections in (\d+) real seconds", out).groups()
    return {"rps": int(connections) / float(seconds)}


def uptime() -> str:
    return sh(["uptime"]).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--distro", default="debian12")
    parser.add_argument("--keep", action="store_true", help="keep the container afterwards")
    args = parser.parse_args()

    address = setup(args.distro)
    def url(cfg: str, path: str) -> str:
        return f"https://{address}:{PORTS[cfg]}{path}"

    workloads = {
        "static": lambda cfg: wrk(url(cfg, "/static-10k.bin"), args.duration, args.connections, False),
        "landing": lambda cfg: wrk(url(cfg, "/"), args.duration, args.connections, False),
        "new-conn": lambda cfg: wrk(url(cfg, "/"), args.duration, args.connections, True),
        "s_time new": lambda cfg: s_time(address, PORTS[cfg], args.duration, False),
        "s_time reuse": lambda cfg: s_time(address, PORTS[cfg], args.duration, True),
    }
    runs = []
    try:
        for name, measure in workloads.items():
            for cfg in ("role", "stock"):  # warm-up, not recorded
                wrk(f"https://{address}:{PORTS[cfg]}/", 3, 4, False)
            for rnd in range(1, args.rounds + 1):
                order = ("role", "stock") if rnd % 2 else ("stock", "role")
                for cfg in order:
                    load = uptime()
                    result = measure(cfg)
                    runs.append({"workload": name, "round": rnd, "config": cfg, **result, "uptime": load})
                    print(f"{name} round {rnd} {cfg}: {result} | {load}", file=sys.stderr)
    finally:
        if not args.keep:
            sh(["docker", "rm", "-f", CONTAINER], check=False)
            sh(["docker", "network", "rm", "nginx-bench"], check=False)

    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (results / f"nginx-{stamp}.json").write_text(json.dumps(runs, indent=1))

    print("| workload | round | role req/s | stock req/s | role/stock | role p50/p90/p99 ms | stock p50/p90/p99 ms |")
    print("|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {}
    for name in workloads:
        for rnd in range(1, args.rounds + 1):
            pair = {r["config"]: r for r in runs if r["workload"] == name and r["round"] == rnd}
            role, stock = pair["role"], pair["stock"]
            ratio = role["rps"] / stock["rps"]
            ratios.setdefault(name, []).append(ratio)
            lat = {c: "/".join(f"{r[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms")) if "p50_ms" in r else "-"
                   for c, r in pair.items()}
            print(f"| {name} | {rnd} | {role['rps']:.0f} | {stock['rps']:.0f} | {ratio:.3f} "
                  f"| {lat['role']} | {lat['stock']} |")
    print()
    print("| workload | role/stock (geometric mean of the rounds) |")
    print("|---|---|")
    for name, values in ratios.items():
        print(f"| {name} | {statistics.geometric_mean(values):.3f} |")
    errors = [r for r in runs if r.get("non2xx") or r.get("socket_errors")]
    print(f"\nruns with non-2xx responses or socket errors: {len(errors)}")
    for r in errors:
        print(f"- {r['workload']} round {r['round']} {r['config']}: "
              f"non2xx {r['non2xx']}, socket errors {r['socket_errors']}")


if __name__ == "__main__":
    main()
