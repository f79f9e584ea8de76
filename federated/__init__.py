"""Federated learning for edgenode: numpy models, non-IID data, Flower strategies over gossip.

Knows nothing of ``edgenode`` or ``simnet``: signers, verifiers, publish and
subscribe callables and clocks are passed in.  Modules:

* :mod:`federated.models`: numpy logistic regression / MLP, ONNX export
* :mod:`federated.data`: digits, Dirichlet split, the :class:`DataLoader` protocol
* :mod:`federated.flower`: the Flower adapter (records, signed updates, strategies)
* :mod:`federated.rounds`: sans-IO gossip rounds (:class:`RoundEngine`)
* :mod:`federated.sim`: many engines on a virtual clock
* :mod:`federated.gossip`: an asyncio driver over publish/subscribe callables
* :mod:`federated.deploy`: ``flower-superlink`` / ``flower-supernode`` / ``flwr run`` with TLS
"""

from .data import ArrayLoader, DataLoader, Dataset, DigitsPartition, dirichlet_partition, load_digits_split
from .errors import (
    AggregationFailed,
    BadUpdate,
    FederatedError,
    FederatedLocalError,
    FederatedRemoteError,
    FlowerRunFailed,
)
from .flower import (
    STRATEGIES,
    Aggregator,
    Contribution,
    ModelUpdate,
    StrategyConfig,
    decode_update,
    ed25519_verify,
    encode_update,
    from_array_record,
    to_array_record,
    update_digest,
)
from .models import (
    DenseModel,
    TrainConfig,
    export_onnx,
    logistic_regression,
    make_model,
    mlp,
    to_onnx_bytes,
    weights_to_onnx_bytes,
)
from .rounds import (
    GossipRound,
    LocalTrainer,
    ModelTrainer,
    PublishUpdate,
    Rejoined,
    RoundConfig,
    RoundDone,
    RoundEngine,
    TrainResult,
)

__all__ = [
    "STRATEGIES",
    "AggregationFailed",
    "Aggregator",
    "ArrayLoader",
    "BadUpdate",
    "Contribution",
    "DataLoader",
    "Dataset",
    "DenseModel",
    "DigitsPartition",
    "FederatedError",
    "FederatedLocalError",
    "FederatedRemoteError",
    "FlowerRunFailed",
    "GossipRound",
    "LocalTrainer",
    "ModelTrainer",
    "ModelUpdate",
    "PublishUpdate",
    "Rejoined",
    "RoundConfig",
    "RoundDone",
    "RoundEngine",
    "StrategyConfig",
    "TrainConfig",
    "TrainResult",
    "decode_update",
    "dirichlet_partition",
    "ed25519_verify",
    "encode_update",
    "export_onnx",
    "from_array_record",
    "load_digits_split",
    "logistic_regression",
    "make_model",
    "mlp",
    "to_array_record",
    "to_onnx_bytes",
    "update_digest",
    "weights_to_onnx_bytes",
]
