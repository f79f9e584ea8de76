"""The Flower App (Message API) for coordinated fleets: same models and data as the gossip mode.

``server_app`` (a ``ServerApp``) and ``client_app`` (a ``ClientApp``) are the
components named in ``federated/app/pyproject.toml``; ``flwr run federated/app``
submits them to a SuperLink and SuperNodes run the client side.  The server
evaluates the global model centrally each round and, when the run config has a
``results-path``, writes the per-round results there as JSON (the outcome of a
run is read from that file: ``flwr run`` can exit 0 when the run failed).

Run config (``[tool.flwr.app.config]``): ``num-server-rounds``, ``local-epochs``,
``learning-rate``, ``model``, ``strategy``, ``alpha``, ``seed``, ``results-path``.
Node config (``flower-supernode --node-config``): ``partition-id``, ``num-partitions``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .data import DigitsPartition, load_digits_split
from .models import TrainConfig, make_model

__all__ = ["server_app", "client_app", "RESULTS_VERSION"]

RESULTS_VERSION = 1
"""Version of the results JSON: ``{"version", "rounds": [{"round", "loss", "accuracy", "t"}], "done"}``."""


def _int(cfg: Any, key: str, default: int) -> int:
    return int(cfg[key]) if key in cfg else default


def _str(cfg: Any, key: str, default: str) -> str:
    return str(cfg[key]) if key in cfg else default


def _float(cfg: Any, key: str, default: float) -> float:
    return float(cfg[key]) if key in cfg else default


def _build_server() -> Any:
    from flwr.app import ArrayRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp import strategy as s

    app = ServerApp()

    @app.main()  # type: ignore[misc]
    def main(grid: Grid, context: Context) -> None:
        rc = context.run_config
        model_name = _str(rc, "model", "digits")
        name = _str(rc, "strategy", "fedavg")
        kw: dict[str, Any] = {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_available_nodes": 1,
                              "min_train_nodes": 1}
        factories: dict[str, Any] = {
            "fedavg": s.FedAvg,
            "fedprox": lambda **k: s.FedProx(proximal_mu=0.1, **k),
            "fedmedian": s.FedMedian,
            "fedadam": lambda **k: s.FedAdam(eta=0.1, **k),
            "trimmedavg": lambda **k: s.FedTrimmedAvg(beta=0.2, **k),
        }
        strategy = factories[name](**kw)
        _, test = load_digits_split(seed=_int(rc, "seed", 0))
        results_path = _str(rc, "results-path", "")
        rounds: list[dict[str, float]] = []
        model = make_model(model_name, seed=_int(rc, "seed", 0))

        def write(done: bool) -> None:
            if results_path:
                out = {"version": RESULTS_VERSION, "rounds": rounds, "done": done, "strategy": name}
                tmp = Path(results_path + ".part")
                tmp.write_text(json.dumps(out))
                tmp.replace(results_path)

        def central_eval(rnd: int, arrays: ArrayRecord) -> MetricRecord:
            model.set_weights(arrays.to_numpy_ndarrays())
            loss, acc = model.evaluate(test.x, test.y)
            rounds.append({"round": rnd, "loss": loss, "accuracy": acc, "t": time.time()})
            print(f"[edgenode-fl] round={rnd} loss={loss:.4f} accuracy={acc:.4f}", flush=True)
            write(False)
            return MetricRecord({"loss": loss, "accuracy": acc})

        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.get_weights()),
            num_rounds=_int(rc, "num-server-rounds", 3),
            evaluate_fn=central_eval,
        )
        write(True)

    return app


def _build_client() -> Any:
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    def _setup(context: Context) -> tuple[Any, DigitsPartition]:
        rc, nc = context.run_config, context.node_config
        part = DigitsPartition(
            _int(nc, "partition-id", 0), _int(nc, "num-partitions", 1), _float(rc, "alpha", 0.5), _int(rc, "seed", 0)
        )
        return make_model(_str(rc, "model", "digits"), seed=_int(rc, "seed", 0)), part

    @app.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        model, part = _setup(context)
        global_w = msg.content.array_records["arrays"].to_numpy_ndarrays()
        model.set_weights(global_w)
        cfg = msg.content.config_records.get("config")
        # FedProx only forwards proximal-mu in the config: the client applies the term itself.
        mu = float(str(cfg["proximal-mu"])) if cfg is not None and "proximal-mu" in cfg else 0.0
        rc = context.run_config
        tc = TrainConfig(epochs=_int(rc, "local-epochs", 5), learning_rate=_float(rc, "learning-rate", 0.5),
                         proximal_mu=mu)
        data = part.train_data()
        loss = model.fit(data.x, data.y, tc, seed=part.index, anchor=global_w)
        content = RecordDict({
            "arrays": ArrayRecord(model.get_weights()),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(data)}),
        })
        return Message(content=content, reply_to=msg)

    @app.evaluate()  # type: ignore[misc]
    def evaluate(msg: Message, context: Context) -> Message:
        model, part = _setup(context)
        model.set_weights(msg.content.array_records["arrays"].to_numpy_ndarrays())
        test = part.test_data()
        loss, acc = model.evaluate(test.x, test.y)
        metrics = MetricRecord({"eval_loss": loss, "eval_acc": acc, "num-examples": len(test)})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

    return app


server_app = _build_server()
"""The ``ServerApp``: Flower strategy over SuperNodes, central evaluation, results file."""
client_app = _build_client()
"""The ``ClientApp``: local training with :mod:`federated.models` on a Dirichlet share of digits."""
