"""Training-step throughput of a method on a backbone, without data loading or Lightning.

Times the step the trainer runs (views on the device, forward and loss under autocast at the
precision ``auto`` resolves to, backward, optimizer step) on random uint8 images, so that networks
and heads can be compared in seconds instead of a 10-minute run. Prints images/s of three 5-step
windows (the machine is shared: read the spread, not one figure) and writes them as JSON, with
the CPU's flags. ``--also-plain-convs`` times the same network with every convolution run by
``F.conv2d`` (no dense path on small maps); ``--precisions auto bf16-mixed 32-true`` times each
precision. Arms' windows are interleaved so that all see the same machine load.

    python benchmarks/step_throughput.py --backbone resnet10_cpu
    python benchmarks/step_throughput.py --backbone resnet18_cpu_tiny --method mocov3
    python benchmarks/step_throughput.py --also-plain-convs --windows 6
    python benchmarks/step_throughput.py --precisions auto bf16-mixed 32-true
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from selfsight.backbones import BackboneConfig, backbone_config
from selfsight.cli import key_values
from selfsight.config import PRECISIONS
from selfsight.device import autocast, computing_at, cpu_facts, resolve_precision
from selfsight.methods import get_method
from selfsight.nn.ema import ema_update
from selfsight.nn.small_grid_conv import use_small_grid_convs


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="simclr")
    p.add_argument("--backbone", default="resnet10_cpu")
    p.add_argument("--backbone-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--image-size", type=int, default=28, help="stored image size")
    p.add_argument("--view-size", type=int, default=20)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--also-plain-convs", action="store_true")
    p.add_argument("--precisions", nargs="+", default=["auto"], choices=PRECISIONS)
    p.add_argument("--out", default="benchmarks/results/step_throughput.json")
    return p.parse_args()


def build(args: argparse.Namespace, net: BackboneConfig, dense: bool) -> tuple:
    """(method, optimizer) as the trainer builds them; ``dense=False``: plain convolutions."""
    torch.manual_seed(0)
    method_cls = get_method(args.method)
    method = method_cls(net, method_cls.default_config(net), batch_size=args.batch_size)
    use_small_grid_convs(method, enabled=dense)
    method = method.to(memory_format=torch.channels_last)
    return method, method.configure_optimizers()


def main() -> None:
    args = parse()
    options = key_values(args.backbone_set, "--backbone-set")
    net = backbone_config(args.backbone, 1, args.view_size, options)
    arms = {"default": (*build(args, net, dense=True), args.precisions[0])}
    for precision in args.precisions[1:]:
        arms[f"precision_{precision}"] = (*build(args, net, dense=True), precision)
    if args.also_plain_convs:
        arms["plain_convs"] = (*build(args, net, dense=False), args.precisions[0])
    images = torch.randint(0, 256, (args.batch_size, 1, args.image_size, args.image_size),
                           dtype=torch.uint8)
    resolved = {name: resolve_precision(arm[2], "cpu").name for name, arm in arms.items()}

    def step(name: str, method, optimizer, precision: str) -> None:
        views = method.make_views(images)
        with computing_at(resolved[name], "cpu", announce=False), autocast(torch.device("cpu")):
            loss, _ = method.compute_loss(views)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        for online, target in method.ema_pairs():  # as the trainer does after each step
            ema_update(target, online, 0.99)

    for name, arm in arms.items():
        for _ in range(3):  # warm-up: allocator, oneDNN kernel choice
            step(name, *arm)
    rates: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.windows):
        for name, arm in arms.items():
            started = time.perf_counter()
            for _ in range(5):
                step(name, *arm)
            rates[name].append(round(5 * args.batch_size / (time.perf_counter() - started), 1))
    method = arms["default"][0]
    result = {"method": args.method, "backbone": args.backbone, "backbone_set": options,
              "feature_dim": method.backbone.dim, "batch_size": args.batch_size,
              "view_size": args.view_size, "threads": torch.get_num_threads(),
              "backbone_parameters_m": round(sum(p.numel() for p in
                                                 method.backbone.parameters()) / 1e6, 3),
              "precision": {name: {"requested": arm[2], "resolved": resolved[name]}
                            for name, arm in arms.items()},
              "cpu": cpu_facts(),
              "images_per_sec_windows": rates["default"]}
    for name in arms:
        if name != "default":
            result[f"{name}_images_per_sec_windows"] = rates[name]
    print(json.dumps(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
