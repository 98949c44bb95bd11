"""MLP corrections: sizes, initialisation, scales and activations against hand-written forwards."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from ude.nn import ACTIVATIONS, MLP, AbstractCorrection, rbf

KEY = jr.key(0)
# Few distinct layer shapes: each new shape compiles its own random draw (about 0.3 s).
SMALL = dict(width=4, depth=1)


def numpy_forward(net, y, acts):
    """The MLP's forward pass written out in numpy."""
    h = np.asarray(y, dtype=np.float64)
    if net.input_scale is not None:
        h = h / np.asarray(net.input_scale)
    for layer, act in zip(net.layers[:-1], acts, strict=True):
        h = act(np.asarray(layer.weight) @ h + np.asarray(layer.bias))
    last = net.layers[-1]
    return np.asarray(last.weight) @ h + np.asarray(last.bias)


def test_paper_network_has_87_parameters():
    net = MLP(2, 2, width=5, depth=3, activation="rbf", key=KEY)
    assert isinstance(net, AbstractCorrection)
    assert net.n_params == 87
    assert sum(x.size for x in jax.tree_util.tree_leaves(net) if hasattr(x, "size")) == 87
    assert [layer.weight.shape for layer in net.layers] == [(5, 2), (5, 5), (5, 5), (2, 5)]
    assert net.in_size == 2 and net.out_size == 2 and net.activations == ("rbf",) * 3


def test_glorot_init_bounds_and_zero_biases():
    net = MLP(2, 2, width=5, depth=3, key=KEY)
    for layer in net.layers:
        fan_out, fan_in = layer.weight.shape
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = np.asarray(layer.weight)
        assert np.all(np.abs(w) <= limit)
        # uniform on [-limit, limit]: the extremes are approached, not a narrower distribution
        assert np.max(np.abs(w)) > 0.6 * limit
        np.testing.assert_array_equal(layer.bias, 0.0)
    # one big layer pins the distribution down: U(-limit, limit) has std limit/sqrt(3), and 4096
    # draws reach within 1 % of the limit (a smaller limit, e.g. a wrong fan, fails here)
    w = np.asarray(MLP(64, 64, width=1, depth=0, key=KEY).layers[0].weight)
    limit = np.sqrt(6.0 / 128)
    assert np.max(np.abs(w)) <= limit and np.max(np.abs(w)) > 0.99 * limit
    assert abs(np.std(w) / (limit / np.sqrt(3)) - 1) < 0.05 and abs(np.mean(w)) < 0.05 * limit
    # different layers get different keys
    assert not np.allclose(net.layers[2].weight, net.layers[1].weight)
    # equinox's default init has nonzero biases
    other = MLP(2, 2, width=5, depth=3, init="default", key=KEY)
    assert np.any(np.asarray(other.layers[0].bias) != 0)


def test_forward_matches_numpy():
    y = np.array([0.3, -1.1])
    net = MLP(2, 2, width=5, depth=3, activation="tanh", init="default", key=KEY)
    np.testing.assert_allclose(
        net(0.0, jnp.asarray(y)), numpy_forward(net, y, [np.tanh] * 3), rtol=1e-13
    )
    net = MLP(2, 2, width=4, depth=0, init="default", key=KEY)  # depth 0 is an affine map
    assert len(net.layers) == 1
    np.testing.assert_allclose(net(0.0, jnp.asarray(y)), numpy_forward(net, y, []), rtol=1e-13)


def test_per_layer_activations():
    y = np.array([0.3, -1.1])

    def np_rbf(z):
        return np.exp(-(z**2))

    def np_relu(z):
        return np.maximum(z, 0.0)

    net = MLP(2, 2, width=5, depth=3, activation=("rbf", "relu", "tanh"), init="default", key=KEY)
    assert net.activations == ("rbf", "relu", "tanh")
    want = numpy_forward(net, y, [np_rbf, np_relu, np.tanh])
    np.testing.assert_allclose(net(0.0, jnp.asarray(y)), want, rtol=1e-13)
    # and the order matters
    swapped = MLP(
        2, 2, width=5, depth=3, activation=("tanh", "relu", "rbf"), init="default", key=KEY
    )
    assert not np.allclose(swapped(0.0, jnp.asarray(y)), want)


def test_activations():
    z = jnp.linspace(-2.0, 2.0, 9)
    np.testing.assert_allclose(rbf(z), np.exp(-(np.asarray(z) ** 2)), rtol=1e-15)
    np.testing.assert_allclose(ACTIVATIONS["rbf"](z), np.exp(-(np.asarray(z) ** 2)), rtol=1e-15)
    np.testing.assert_allclose(ACTIVATIONS["tanh"](z), np.tanh(z), rtol=1e-15)
    np.testing.assert_allclose(ACTIVATIONS["relu"](z), np.maximum(z, 0), rtol=1e-15)
    np.testing.assert_allclose(ACTIVATIONS["identity"](z), z, rtol=1e-15)
    np.testing.assert_allclose(ACTIVATIONS["softplus"](z), np.log1p(np.exp(z)), rtol=1e-13)
    np.testing.assert_allclose(
        ACTIVATIONS["sigmoid"](z), 1 / (1 + np.exp(-np.asarray(z))), rtol=1e-13
    )


def test_output_scale():
    y = jnp.array([0.7, 2.5])
    zero = MLP(2, 2, **SMALL, output_scale=0.0, init="default", key=KEY)
    np.testing.assert_array_equal(zero(0.0, y), 0.0)
    np.testing.assert_array_equal(zero.layers[-1].weight, 0.0)
    # hidden layers are unaffected
    full = MLP(2, 2, **SMALL, init="default", key=KEY)
    np.testing.assert_array_equal(zero.layers[0].weight, full.layers[0].weight)
    # the last layer (weight and bias) is scaled, so the output is scaled
    small = MLP(2, 2, **SMALL, output_scale=0.1, init="default", key=KEY)
    np.testing.assert_allclose(small(0.0, y), 0.1 * full(0.0, y), rtol=1e-13)
    np.testing.assert_allclose(small.layers[-1].bias, 0.1 * full.layers[-1].bias, rtol=1e-15)


def test_input_scale_divides_inputs():
    y = jnp.array([40.0, 0.02])
    scale = jnp.array([100.0, 0.05])
    scaled = MLP(2, 2, **SMALL, input_scale=scale, key=KEY)
    plain = MLP(2, 2, **SMALL, key=KEY)
    np.testing.assert_allclose(scaled(0.0, y), plain(0.0, y / scale), rtol=1e-14)
    assert not np.allclose(scaled(0.0, y), plain(0.0, y))
    # a scalar scale broadcasts to every input
    s = MLP(2, 2, **SMALL, input_scale=10.0, key=KEY)
    np.testing.assert_array_equal(s.input_scale, [10.0, 10.0])
    np.testing.assert_allclose(s(0.0, y), plain(0.0, y / 10.0), rtol=1e-14)
    # the scale is data: no gradient flows into it
    g = jax.grad(lambda m: jnp.sum(m(0.0, y)))(scaled)
    np.testing.assert_array_equal(g.input_scale, 0.0)
    assert np.any(np.asarray(g.layers[0].weight) != 0)


def test_dtype():
    net = MLP(2, 2, **SMALL, key=KEY, dtype=jnp.float32)
    assert all(layer.weight.dtype == jnp.float32 for layer in net.layers)
    assert net(0.0, jnp.ones(2, jnp.float32)).dtype == jnp.float32
    assert MLP(2, 2, **SMALL, key=KEY).layers[0].weight.dtype == jnp.float64


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(width=0), "width"),
        (dict(width=-3), "width"),
        (dict(width=2.5), "width"),
        (dict(depth=-1), "depth"),
        (dict(in_size=0), "in_size"),
        (dict(out_size=0), "out_size"),
        (dict(activation="nonsense"), "activation"),
        (dict(activation=("tanh",)), "activation"),
        (dict(activation=("tanh", "nonsense")), "activation"),
        (dict(init="he"), "init"),
    ],
)
def test_construction_errors(kwargs, field):
    args = dict(in_size=2, out_size=2, width=4, depth=2, key=KEY) | kwargs
    with pytest.raises(ValueError, match=field):
        MLP(args.pop("in_size"), args.pop("out_size"), **args)
