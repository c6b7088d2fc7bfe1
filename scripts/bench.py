"""Benchmark for `make bench`: seconds per chapter, and udm's core operations per second.

Each chapter runs top to bottom in a fresh kernel, one after another, so the numbers
are what a reader's two-core laptop sees. A chapter over the 90-second budget makes
the command exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 90.0


def time_notebook(path: Path) -> float:
    """Execute one notebook in a fresh kernel and return the wall-clock seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        # Quiet the kernel's start-up notice about its local TCP transport.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def rate(operation, repeats: int) -> float:
    """Calls per second of ``operation`` after one warm-up call."""
    operation()
    start = time.perf_counter()
    for _ in range(repeats):
        operation()
    return repeats / (time.perf_counter() - start)


def core_operations() -> list[tuple[str, str]]:
    """Training steps and full sampling runs of the small 2-D diffusion model, per second."""
    import torch

    from udm import diffusion, nets, schedules, toy

    torch.manual_seed(0)
    schedule = schedules.linear_schedule(100)
    model = nets.TimeConditionedMLP(data_dim=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = toy.default_mixture().sample(256, generator=torch.Generator().manual_seed(0))

    def training_step() -> None:
        loss = diffusion.x0_prediction_loss(model, schedule, data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def sampling_run() -> None:
        with torch.no_grad():
            diffusion.sample(model, schedule, n=256, dim=2)

    return [
        ("training step (batch 256, 2-D MLP)", f"{rate(training_step, 200):.0f} / s"),
        (f"full sampling run (T={schedule.T}, 256 points)", f"{rate(sampling_run, 5):.2f} / s"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter")
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))

    rows, over = [], []
    for path in paths:
        seconds = time_notebook(path)
        verdict = "ok" if seconds <= BUDGET_SECONDS else "OVER BUDGET"
        if seconds > BUDGET_SECONDS:
            over.append(path.name)
        rows.append((path.name, f"{seconds:.1f}", verdict))
        print(f"  {path.name}: {seconds:.1f} s", file=sys.stderr)
    print(tabulate(rows, headers=["chapter", "seconds", f"budget {BUDGET_SECONDS:.0f} s"]))
    print()
    print(tabulate(core_operations(), headers=["core operation", "rate"]))
    if over:
        print(f"\nover the {BUDGET_SECONDS:.0f}-second budget: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
