"""Federated learning figures: convergence, poisoning, seconds per round, bytes per update.

    python benchmarks/bench_fl.py           # full run (includes a real SuperLink + 3 SuperNodes, ~2 min)
    python benchmarks/bench_fl.py --quick   # smoke run: smaller swarms, no SuperLink

Figures: fl.rounds_to_095, fl.accuracy_final, fl.accuracy_poisoned_fedavg,
fl.accuracy_poisoned_robust, fl.round_s, fl.update_bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from federated import RoundConfig, StrategyConfig, TrainConfig, load_digits_split, make_model
from federated.sim import digits_swarm, simulate


def _quiet() -> None:
    import flwr.common.logger  # noqa: F401

    logging.getLogger("flwr").setLevel(logging.WARNING)


def convergence(nodes: int, max_rounds: int) -> None:
    train, test = load_digits_split()
    central = make_model("digits")
    central.fit(train.x, train.y, TrainConfig(epochs=40))
    central_acc = central.evaluate(test.x, test.y)[1]
    res = simulate(digits_swarm(nodes, rounds=max_rounds, alpha=0.5))
    accs = [res.mean_accuracy(r) for r in range(max_rounds)]
    reached = next((r + 1 for r, a in enumerate(accs) if a >= 0.95), None)
    emit("fl.rounds_to_095", reached if reached is not None else max_rounds + 1, "rounds", nodes=nodes,
         alpha=0.5, strategy="fedavg", model="logreg", local_epochs=5, reached=reached is not None, goal="<=30")
    emit("fl.accuracy_final", round(accs[-1], 4), "accuracy", nodes=nodes, rounds=max_rounds,
         centralised=round(central_acc, 4), model="logreg")
    emit("fl.update_bytes", res.update_bytes, "bytes", model="logreg", params=64 * 10 + 10,
         signed=True, mlp_bytes=_mlp_update_bytes())


def _mlp_update_bytes() -> int:
    res = simulate(digits_swarm(2, rounds=1, model="digits-mlp"))
    return res.update_bytes


def poisoning(nodes: int, rounds: int) -> None:
    bad = nodes // 5
    honest = range(bad, nodes)
    fedavg = simulate(digits_swarm(nodes, rounds=rounds, poisoned=bad, strategy=StrategyConfig("fedavg")))
    emit("fl.accuracy_poisoned_fedavg", round(fedavg.mean_accuracy(rounds - 1, honest), 4), "accuracy",
         nodes=nodes, poisoned=bad, rounds=rounds, attack="gaussian noise sd=10")
    robust = {}
    for name in ("multikrum", "trimmedavg", "fedmedian"):
        cfg = StrategyConfig(name, num_malicious=bad, trim_beta=0.25)
        robust[name] = round(simulate(digits_swarm(nodes, rounds=rounds, poisoned=bad, strategy=cfg))
                             .mean_accuracy(rounds - 1, honest), 4)
    emit("fl.accuracy_poisoned_robust", robust["multikrum"], "accuracy", strategy="multikrum", nodes=nodes,
         poisoned=bad, rounds=rounds, trimmedavg=robust["trimmedavg"], fedmedian=robust["fedmedian"], goal=">=0.90")


async def _memnet_rounds(nodes: int, rounds: int) -> list[float]:
    from edgenode.fl import FederatedService
    from edgenode.identity import Identity
    from edgenode.net.memnet import MemNetwork
    from federated import DigitsPartition

    net = MemNetwork(seed=0)
    ids = [Identity.generate() for _ in range(nodes)]
    ts = [net.add_node(i) for i in ids]
    cfg = RoundConfig(quorum=nodes, round_timeout=30.0, max_rounds=rounds)
    svcs = [FederatedService(t, i, loader=DigitsPartition(k, nodes), rounds=cfg, seed=k)
            for k, (i, t) in enumerate(zip(ids, ts, strict=True))]
    for t in ts:
        await t.start()
    for k in range(nodes):
        for j in range(k + 1, nodes):
            await ts[k].connect(ts[j].listen_addrs[0])
    for s in svcs:
        s.open()
    await net.drain()
    hist = await asyncio.gather(*(s.run() for s in svcs))
    for t in ts:
        await t.stop()
    # a round spans from the first node starting it to the last node closing it
    return [max(h[r].finished_at for h in hist) - min(h[r].started_at for h in hist) for r in range(rounds)]


def round_time(quick: bool) -> None:
    nodes, rounds = 3, 10
    asyncio.run(_memnet_rounds(nodes, 2))  # warm-up: imports, first sessions
    per_round = asyncio.run(_memnet_rounds(nodes, rounds))
    params: dict[str, object] = {"nodes": nodes, "rounds": rounds, "transport": "memnet (in-process)",
                                 "model": "logreg", "goal": "<=1"}
    if not quick:
        from federated.deploy import FlowerFleet

        with tempfile.TemporaryDirectory() as d, FlowerFleet(Path(d), num_nodes=nodes) as fleet:
            res = fleet.run(rounds=3, timeout=400)
        params["flower_superlink_round_s"] = round(res.seconds_per_round, 2)
        params["flower_superlink_accuracy"] = round(res.final_accuracy, 4)
    emit("fl.round_s", round(statistics.median(per_round), 4), "s", **params)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small swarms, no SuperLink")
    args = ap.parse_args()
    _quiet()
    if args.quick:
        convergence(nodes=8, max_rounds=8)
        poisoning(nodes=10, rounds=6)
    else:
        convergence(nodes=20, max_rounds=30)
        poisoning(nodes=20, rounds=20)
    round_time(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
