"""The Flower adapter: records, the signed update wire form, every strategy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from federated import (
    STRATEGIES,
    AggregationFailed,
    Aggregator,
    BadUpdate,
    Contribution,
    FederatedLocalError,
    ModelUpdate,
    StrategyConfig,
    decode_update,
    encode_update,
    from_array_record,
    to_array_record,
    update_digest,
)
from federated.sim import LocalSigner

SIGNER = LocalSigner.from_index(1)
OTHER = LocalSigner.from_index(2)
SHAPES = [(4, 3), (3,)]


def _update(round_: int = 1, model: str = "m", seed: int = 0, signer: LocalSigner = SIGNER) -> ModelUpdate:
    rng = np.random.default_rng(seed)
    return ModelUpdate(
        model=model,
        round=round_,
        author=signer.public_key,
        weights=tuple(rng.standard_normal(s).astype(np.float32) for s in SHAPES),
        num_examples=17,
        metrics={"train_loss": 0.25},
    )


def test_array_record_round_trip():
    w = [np.arange(12, dtype=np.float32).reshape(4, 3), np.ones(3, np.float32)]
    back = from_array_record(to_array_record(w))
    assert [b.shape for b in back] == [(4, 3), (3,)]
    assert all(np.array_equal(a, b) for a, b in zip(w, back, strict=True))


def test_update_round_trip_and_digest():
    u = _update()
    data = encode_update(u, SIGNER)
    assert encode_update(u, SIGNER) == data  # canonical
    v = decode_update(data, model="m", shapes=SHAPES)
    assert (v.model, v.round, v.author, v.num_examples, dict(v.metrics)) == ("m", 1, SIGNER.public_key, 17, u.metrics)
    assert all(np.array_equal(a, b) for a, b in zip(u.weights, v.weights, strict=True))
    assert update_digest(data) != update_digest(encode_update(_update(seed=1), SIGNER))


def test_update_rejections_carry_a_reason():
    data = encode_update(_update(), SIGNER)
    with pytest.raises(BadUpdate) as e:
        decode_update(data, model="other")
    assert e.value.reason == "model"
    with pytest.raises(BadUpdate) as e:
        decode_update(data, shapes=[(3, 4), (3,)])
    assert e.value.reason == "shape"
    forged = bytearray(data)
    forged[-100] ^= 1  # a weight byte: the signature no longer covers it
    with pytest.raises(BadUpdate) as e:
        decode_update(bytes(forged))
    assert e.value.reason == "signature"
    with pytest.raises(BadUpdate) as e:
        decode_update(data[:-1])
    assert e.value.reason == "decode"
    with pytest.raises(FederatedLocalError):
        encode_update(_update(), OTHER)  # signer is not the author


def test_non_finite_weights_are_rejected():
    u = _update()
    bad = ModelUpdate(u.model, u.round, u.author, (np.full((4, 3), np.nan, np.float32), u.weights[1]), 1)
    with pytest.raises(BadUpdate) as e:
        decode_update(encode_update(bad, SIGNER))
    assert e.value.reason == "shape"


@given(st.binary(max_size=600))
def test_decoder_is_total_on_arbitrary_bytes(data):
    try:
        decode_update(data)
    except BadUpdate as exc:
        assert exc.reason in {"decode", "signature", "model", "shape"}


_VALID = encode_update(_update(), SIGNER)


@given(st.integers(0, len(_VALID) - 1), st.integers(1, 255), st.integers(0, len(_VALID)))
def test_decoder_is_total_on_mutations(pos, xor, cut):
    data = bytearray(_VALID)
    data[pos] ^= xor
    for candidate in (bytes(data), bytes(data[:cut]), _VALID[:cut] + b"\x00" * 3):
        try:
            decode_update(candidate, model="m", shapes=SHAPES)
        except BadUpdate:
            continue
        pytest.fail("a mutated update decoded")


@given(
    st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=20),
    st.integers(0, 2**40),
    st.text(min_size=1, max_size=20),
    st.dictionaries(st.text(max_size=8), st.floats(-1e9, 1e9), max_size=4),
)
def test_round_trip_property(values, round_, model, metrics):
    w = np.array(values, np.float32)
    u = ModelUpdate(model, round_, SIGNER.public_key, (w,), 3, metrics)
    v = decode_update(encode_update(u, SIGNER), model=model, shapes=[w.shape])
    assert v.round == round_ and v.model == model and np.array_equal(v.weights[0], w)
    assert dict(v.metrics) == pytest.approx(metrics)


def _contribs(n: int, poisoned: int = 0) -> list[Contribution]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        mean = 100.0 if i < poisoned else 1.0
        out.append(Contribution([rng.normal(mean, 0.1, s).astype(np.float32) for s in SHAPES], 10 + i, {"loss": 0.5}))
    return out


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_aggregates_repeatedly(name):
    agg = Aggregator(StrategyConfig(name, num_malicious=1))
    current = [np.zeros(s, np.float32) for s in SHAPES]
    contribs = _contribs(8)
    first, metrics = agg.aggregate(1, contribs, current)
    second, _ = agg.aggregate(2, contribs, first)  # same inputs again: fresh messages per call
    assert [w.shape for w in first] == SHAPES
    assert all(np.isfinite(w).all() for w in first + second)
    assert "loss" in metrics
    if name not in ("fedadam", "fedyogi", "fedadagrad"):
        assert abs(float(first[0].mean()) - 1.0) < 0.1
        assert all(np.allclose(a, b) for a, b in zip(first, second, strict=True))
    else:
        # server-side optimisers move from the current weights towards the average
        assert 0.0 < float(first[0].mean()) <= 1.0
        assert float(second[0].mean()) > float(first[0].mean())


@pytest.mark.parametrize("name", ["fedmedian", "krum", "multikrum", "trimmedavg", "bulyan"])
def test_robust_strategies_ignore_an_outlier(name):
    agg = Aggregator(StrategyConfig(name, num_malicious=1, trim_beta=0.2))
    out, _ = agg.aggregate(1, _contribs(8, poisoned=1), [np.zeros(s, np.float32) for s in SHAPES])
    assert abs(float(out[0].mean()) - 1.0) < 0.1
    fedavg, _ = Aggregator().aggregate(1, _contribs(8, poisoned=1), [np.zeros(s, np.float32) for s in SHAPES])
    assert float(fedavg[0].mean()) > 5.0


def test_aggregation_failures_are_translated():
    with pytest.raises(AggregationFailed):
        Aggregator().aggregate(1, [], [np.zeros(s, np.float32) for s in SHAPES])
    with pytest.raises(FederatedLocalError):
        StrategyConfig("sgd")
