"""P5: orchestration overhead of one retrain run = flow wall time − Σ task run time (goal <= 5 s per run).

Runs the real retrain flow on a small Fashion-MNIST workspace against a temporary Prefect server and reads the
task runs' own run times back from the API. Printed, never asserted.

    .venv/bin/python benchmarks/p5_overhead.py [--per-class 20] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from flows.retrain import retrain
from headstart.library.data.workspace import init_workspace

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=90):
        os.environ["HEADSTART_DVC_REMOTE"] = str(Path(tmp) / "remote")
        workspace = init_workspace(Path(tmp) / "ws")
        os.chdir(workspace)
        subprocess.run(
            [
                str(BIN / "headstart"),
                "data",
                "import",
                "fashion-mnist",
                "--per-class",
                str(args.per_class),
                "--test-per-class",
                "10",
            ],
            check=True,
            capture_output=True,
        )
        overrides = ["train.epochs=2", "train.num_workers=0", "train.scenario=finetune"]
        print(f"P5 orchestration overhead: retrain flow, {args.per_class}/class, 64 px, 2 epochs")
        for n in range(args.runs):
            start = time.perf_counter()
            state = retrain(overrides=overrides, run_dir=f"runs/p5-{n}", return_state=True)
            wall = time.perf_counter() - start
            with get_client(sync_client=True) as client:
                flow_run = client.read_flow_run(state.state_details.flow_run_id)
                tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
            compute = sum(t.total_run_time.total_seconds() for t in tasks)
            print(
                f"  run {n + 1}: flow wall {wall:6.2f} s, Σ task run time {compute:6.2f} s over {len(tasks)} tasks, "
                f"overhead {wall - compute:5.2f} s   (goal <= 5 s)"
            )


if __name__ == "__main__":
    main()
