"""`hwnas.lut`: the expected latency of a distribution over choices, for a differentiable loss
(NumPy here; the same code takes PyTorch tensors)."""

import numpy as np
import pytest

import hwnas


@pytest.mark.parametrize("name", ["nb201", "mbv3"])
def test_one_hot_choices_give_the_models_prediction(models, name):
    m = hwnas.LatencyModel.load(models[name])
    lut = hwnas.lut(m, name)
    assert lut.space == name and lut.device == "mock"
    rng = np.random.default_rng(1)
    for _ in range(20):
        choices = [int(rng.integers(len(d["choices"]))) for d in lut.decisions]
        ms = lut.latency_ms(choices)
        assert ms > 0
    if name == "nb201":
        # nb201's decisions are its six edges, in genome order: one-hot = the model.
        space = hwnas.space("nb201")
        for cell in space.sample(20, seed=2):
            genome = space.encode(cell)
            want = m.predict_batch(space, np.array([genome]))[0]
            assert lut.latency_ms(genome) == pytest.approx(want, rel=1e-9)


def test_a_softmax_relaxation_descends_the_expected_latency(models):
    """The DARTS/FBNet use: logits per edge, softmax, expected latency in the loss."""
    lut = hwnas.lut(hwnas.LatencyModel.load(models["nb201"]), "nb201")
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=len(d["choices"])) for d in lut.decisions]

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    def loss(ls):
        return lut.expected_ms([softmax(x) for x in ls])

    # Central differences against the analytic gradient of the polynomial, for one edge.
    probs = [softmax(x) for x in logits]
    eps = 1e-6
    for d in range(len(logits)):
        for c in range(len(logits[d])):
            up = [x.copy() for x in logits]
            down = [x.copy() for x in logits]
            up[d][c] += eps
            down[d][c] -= eps
            numeric = (loss(up) - loss(down)) / (2 * eps)
            # d/dp of the expectation: the expected latency with edge d fixed to choice c.
            fixed = [np.eye(len(p))[c] if i == d else p for i, p in enumerate(probs)]
            per_choice = [
                lut.expected_ms([np.eye(len(p))[k] if i == d else p for i, p in enumerate(probs)])
                for k in range(len(probs[d]))
            ]
            analytic = probs[d][c] * (lut.expected_ms(fixed) - np.dot(probs[d], per_choice))
            assert numeric == pytest.approx(analytic, rel=1e-4, abs=1e-9)
    # Gradient descent on the logits lowers the expected latency toward the fastest cell.
    start = loss(logits)
    for _ in range(50):
        grads = []
        for d in range(len(logits)):
            per_choice = np.array([
                lut.expected_ms([np.eye(len(p))[k] if i == d else p for i, p in enumerate(probs)])
                for k in range(len(probs[d]))
            ])
            grads.append(probs[d] * (per_choice - np.dot(probs[d], per_choice)))
        logits = [x - 5.0 * g for x, g in zip(logits, grads)]
        probs = [softmax(x) for x in logits]
    assert loss(logits) < start
    assert lut.expected_ms(probs) == pytest.approx(loss(logits))


def test_probabilities_for_every_decision_are_required(models):
    lut = hwnas.lut(hwnas.LatencyModel.load(models["nb201"]), "nb201")
    with pytest.raises(hwnas.HwnasError, match="6 decisions"):
        lut.expected_ms([np.ones(5) / 5])
