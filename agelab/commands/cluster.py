"""``python -m agelab cluster up|down|status``: a Ray head on 127.0.0.1 for this project (agelab.cluster)."""

from __future__ import annotations

import argparse
import json
import sys

from agelab import cluster


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agelab cluster",
        description="Start, inspect and stop a Ray head on 127.0.0.1 for runs and sweeps"
        " (recorded in runs/.cluster.json; `down` stops that head only).",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("up", help="start a head on 127.0.0.1 and print its dashboard address")
    start.add_argument("--dashboard-port", type=int, default=cluster.DASHBOARD_PORT)
    start.add_argument("--num-cpus", type=int, default=None, help="CPUs the head offers (default: all)")
    start.add_argument("--temp-dir", default=None, help="Ray's folder (default /tmp/ray-agelab-UID-PORT)")
    sub.add_parser("down", help="stop the head `up` started, and only it")
    sub.add_parser("status", help="the recorded head: running or not, its jobs; one JSON line")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            state = cluster.up(args.dashboard_port, args.num_cpus, args.temp_dir)
            print(
                f"Ray head at {state['address']} (temp dir {state['temp_dir']}); submit with"
                f" `python -m agelab runs submit ... --ray {state['address'].split('://')[-1]}`,"
                " stop with `python -m agelab cluster down`",
                flush=True,
            )
            print(state["address"], flush=True)
            return 0
        if args.action == "down":
            result = cluster.down()
            if result["address"] is None:
                print("no head recorded (nothing to stop)")
            else:
                print(f"stopped the head at {result['address']} ({result['stopped']} processes)")
            return 0
        print(json.dumps(cluster.status()))
        return 0
    except cluster.ClusterError as err:
        print(f"agelab cluster: {err}", file=sys.stderr)
        return 2
