"""Benchmark for `make bench`: seconds per chapter, then the overhead of udm's core loops.

Each chapter runs top to bottom in a fresh kernel, one after another, so the numbers
are what a reader's two-core laptop sees. A chapter over the 90-second budget makes
the command exit non-zero. Then two tables: every sampler's full loop against the same
network calls alone (goal: at most 1.15x), and the training loop against a bare
forward/backward/optimizer-step loop (goal: at most 1.2x). ``--core-only`` prints the two
tables without running the chapters (seconds).
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


def paired_best(first, second, repeats: int) -> tuple[float, float]:
    """The least CPU time (seconds) of each of two operations, timed alternately.

    One warm-up call of each, then ``repeats`` rounds of one timed call of each, so that
    both see the same conditions (a busy spell of a shared machine hits both alike). CPU
    time of this process, not wall-clock time: with one torch thread it is what the loop
    itself costs, little affected by other programs sharing the cores (on an idle machine
    the two agree).
    """
    first()
    second()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, operation in enumerate((first, second)):
            start = time.process_time()
            operation()
            best[i] = min(best[i], time.process_time() - start)
    return best[0], best[1]


def sampler_overheads(repeats: int = 7) -> list[tuple[str, ...]]:
    """Each sampler's full loop against the same network calls alone, in one process.

    The bench's 2-D MLP (``TimeConditionedMLP(data_dim=2)``, default widths), 1,000 points,
    a 1,000-step grid on the discrete VP path, one thread. The network-only loop replays the
    very inputs (states and times) the sampler gave the network, recorded in a first run:
    a network's cost can depend on its inputs' values (subnormal numbers are slow), so only
    the same calls make a fair baseline. Each pair is timed alternately, best of ``repeats``.
    Every case is recorded before any is timed: recording while timing made the first case's
    loop slower by up to 30% in a fresh process (the memory the recordings take), whichever
    sampler came first.
    """
    import torch

    from udm import nets, samplers, schedules
    from udm.parameterizations import Denoiser

    torch.manual_seed(0)
    net = nets.TimeConditionedMLP(data_dim=2, time_scale=1000).eval()
    path = schedules.linear_schedule(1000).path
    grid = path.grid()
    x_init = path.sample_prior((1000, 2), generator=torch.Generator().manual_seed(0))
    denoiser = Denoiser(net, path, "eps")
    generator = torch.Generator()
    cases = {
        "ancestral": lambda: samplers.ancestral(denoiser, path, grid, x_init, generator),
        "ddim (eta = 0)": lambda: samplers.ddim(denoiser, path, grid, x_init),
        "ddim (eta = 1)": lambda: samplers.ddim(denoiser, path, grid, x_init, generator, eta=1.0),
        "euler": lambda: samplers.euler(denoiser, path, grid, x_init),
        "heun": lambda: samplers.heun(denoiser, path, grid, x_init),
        "euler_maruyama": lambda: samplers.euler_maruyama(denoiser, path, grid, x_init, generator),
        "predictor_corrector": lambda: samplers.predictor_corrector(
            denoiser, path, grid, x_init, generator
        ),
        "edm_stochastic": lambda: samplers.edm_stochastic(denoiser, path, grid, x_init, generator),
        "dpm_solver (order 2)": lambda: samplers.dpm_solver(denoiser, path, grid, x_init, order=2),
        "dpm_solver_2m": lambda: samplers.dpm_solver_2m(denoiser, path, grid, x_init),
    }
    rows, recorded = [], {}
    with torch.no_grad():
        for name, run in cases.items():  # first record every case, then time them all
            calls: list[tuple] = []
            hook = net.register_forward_hook(
                lambda module, inputs, output, seen=calls: seen.append(
                    (inputs[0].clone(), inputs[1].clone())
                )
            )
            run()  # one recorded run: every network call's inputs
            hook.remove()
            recorded[name] = calls
        for name, run in cases.items():
            calls = recorded[name]

            def network_only(calls=calls):
                for x, t in calls:
                    net(x, t)

            alone, loop = paired_best(network_only, run, repeats)
            rows.append(
                (name, str(len(calls)), f"{alone:.3f}", f"{loop:.3f}", f"{loop / alone:.3f}")
            )
    return rows


def training_overheads(steps: int = 300, repeats: int = 5) -> list[tuple[str, ...]]:
    """udm.train.train with prediction_loss against a bare forward/backward/step loop.

    Same network, optimizer (Adam) and batch size (256); the bare loop trains on one fixed,
    precomputed batch (x_t, t, target), so it measures the network and the optimizer alone.
    """
    import torch

    from udm import nets, schedules, toy, train
    from udm.parameterizations import Denoiser, prediction_loss

    path = schedules.linear_schedule(1000).path
    data = toy.default_mixture().sample(20_000, generator=torch.Generator().manual_seed(0))
    rows = []
    for label, prediction, data_std in (
        ("eps (Ch. 7)", "eps", None),
        ("x0, preconditioned (Ch. 6)", "x0", data.std().item()),
    ):
        torch.manual_seed(0)
        net = nets.TimeConditionedMLP(data_dim=2, time_scale=1000)
        denoiser = Denoiser(net, path, prediction, data_std=data_std)
        batch = data[:256]
        t = path.sample_t(256, generator=torch.Generator().manual_seed(1))
        x_t = path.q_sample(batch, t, torch.randn(batch.shape))
        target = torch.randn(batch.shape)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

        def bare(net=net, optimizer=optimizer, x_t=x_t, t=t, target=target):
            for _ in range(steps):
                loss = (net(x_t, t) - target).square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        def udm_loop(denoiser=denoiser):
            train.train(
                denoiser,
                lambda model, b: prediction_loss(model, b[0]),
                data,
                steps=steps,
                batch_size=256,
                lr=1e-4,
                device="cpu",
                progress=False,
            )

        bare_time, udm_time = paired_best(bare, udm_loop, repeats)
        rows.append(
            (
                label,
                f"{steps / bare_time:.0f}",
                f"{steps / udm_time:.0f}",
                f"{udm_time / bare_time:.3f}",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter")
    parser.add_argument(
        "--core-only", action="store_true", help="skip the chapters; time the core loops only"
    )
    args = parser.parse_args()
    over = []
    if not args.core_only:
        paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))
        rows = []
        for path in paths:
            seconds = time_notebook(path)
            verdict = "ok" if seconds <= BUDGET_SECONDS else "OVER BUDGET"
            if seconds > BUDGET_SECONDS:
                over.append(path.name)
            rows.append((path.name, f"{seconds:.1f}", verdict))
            print(f"  {path.name}: {seconds:.1f} s", file=sys.stderr)
        print(tabulate(rows, headers=["chapter", "seconds", f"budget {BUDGET_SECONDS:.0f} s"]))
        print()
    import torch

    torch.set_num_threads(1)
    print("Samplers: the bench's 2-D MLP, 1,000 points, 1,000-step grid, one thread (goal <= 1.15)")
    print(
        tabulate(
            sampler_overheads(),
            headers=[
                "sampler",
                "network calls",
                "network alone (CPU s)",
                "full loop (CPU s)",
                "ratio",
            ],
        )
    )
    print()
    print("Training: udm.train.train + prediction_loss vs a bare loop, batch 256 (goal <= 1.2)")
    print(
        tabulate(
            training_overheads(),
            headers=["model", "bare steps / s", "udm steps / s", "slowdown"],
        )
    )
    if over:
        print(f"\nover the {BUDGET_SECONDS:.0f}-second budget: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
