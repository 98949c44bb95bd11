"""UDE and HybridUDE vector fields, state subsets, and the trainable/frozen split."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import reference_field

from ude.model import UDE, HybridUDE, count_params, network_weights, partition, trainable_filter
from ude.nn import MLP, AbstractCorrection
from ude.physics import SIR, LotkaVolterra, NoPhysics, Parameter

LV = dict(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8)
KEY = jr.key(0)
POINTS = jnp.asarray(np.random.default_rng(0).uniform(0.1, 5.0, size=(6, 2)))


class ExactMissing(AbstractCorrection):
    """The Lotka–Volterra terms the UDE paper leaves to the network: (−βxy, δxy)."""

    beta: float
    delta: float
    in_size: int = eqx.field(static=True, default=2, kw_only=True)
    out_size: int = eqx.field(static=True, default=2, kw_only=True)

    def __call__(self, t, y):
        return jnp.stack([-self.beta * y[0] * y[1], self.delta * y[0] * y[1]])


def known():
    return LotkaVolterra(**LV).keep("growth", "death")


def test_ude_is_known_plus_correction():
    net = MLP(2, 2, width=4, depth=1, key=KEY)
    model = UDE(known(), net)
    assert model.state_names == ("x", "y")
    for y in POINTS:
        np.testing.assert_allclose(model(0.0, y), known()(0.0, y) + net(0.0, y), rtol=1e-14)
        np.testing.assert_allclose(model.missing(0.0, y), net(0.0, y), rtol=1e-14)


def test_exact_correction_recovers_full_system():
    model = UDE(known(), ExactMissing(0.9, 0.8))
    full = reference_field("lotka_volterra", LV)
    for y in POINTS:
        np.testing.assert_allclose(model(0.0, y), full(0.0, np.asarray(y)), rtol=1e-14)


def test_zero_output_scale_gives_known_physics():
    model = UDE(known(), MLP(2, 2, width=4, depth=1, activation="rbf", output_scale=0.0, key=KEY))
    for y in POINTS:
        np.testing.assert_array_equal(model.missing(0.0, y), 0.0)
        np.testing.assert_array_equal(model(0.0, y), known()(0.0, y))
    # no correction at all is the known physics too
    bare = UDE(known())
    np.testing.assert_array_equal(bare(0.0, POINTS[0]), known()(0.0, POINTS[0]))
    np.testing.assert_array_equal(bare.missing(0.0, POINTS[0]), 0.0)


def test_correction_on_a_subset_of_states():
    net = MLP(1, 1, width=4, depth=1, key=KEY)
    model = UDE(known(), net, inputs=("x",), outputs=("y",))
    assert model.inputs == (0,) and model.outputs == (1,)
    for y in POINTS:
        want = np.array([0.0, float(net(0.0, y[:1])[0])])
        np.testing.assert_allclose(model.missing(0.0, y), want, rtol=1e-14)
        np.testing.assert_allclose(model(0.0, y), known()(0.0, y) + want, rtol=1e-14)
    # the order of inputs is the order the network reads them in
    net2 = MLP(2, 1, width=4, depth=1, key=KEY)
    swapped = UDE(known(), net2, inputs=("y", "x"), outputs=("x",))
    y = POINTS[0]
    np.testing.assert_allclose(swapped.missing(0.0, y), [net2(0.0, y[::-1])[0], 0.0], rtol=1e-14)
    # three states, network on two of them
    sir = SIR(0.5, 0.1)
    net3 = MLP(2, 2, width=4, depth=1, key=KEY)
    model3 = UDE(sir, net3, inputs=("S", "I"), outputs=("I", "R"))
    y = jnp.array([0.6, 0.3, 0.1])
    u = net3(0.0, y[:2])
    np.testing.assert_allclose(
        model3(0.0, y), sir(0.0, y) + jnp.array([0.0, u[0], u[1]]), rtol=1e-14
    )


def test_ude_construction_errors():
    with pytest.raises(ValueError, match="in_size"):
        UDE(known(), MLP(3, 2, width=4, depth=1, key=KEY))
    with pytest.raises(ValueError, match="out_size"):
        UDE(known(), MLP(2, 3, width=4, depth=1, key=KEY))
    with pytest.raises(ValueError, match="in_size"):
        UDE(known(), MLP(2, 1, width=4, depth=1, key=KEY), inputs=("x",), outputs=("y",))
    with pytest.raises(ValueError, match="out_size"):
        UDE(known(), MLP(1, 2, width=4, depth=1, key=KEY), inputs=("x",), outputs=("y",))
    with pytest.raises(ValueError, match="inputs.*'z'"):
        UDE(known(), MLP(1, 2, width=4, depth=1, key=KEY), inputs=("z",))
    with pytest.raises(ValueError, match="outputs.*'z'"):
        UDE(known(), MLP(2, 1, width=4, depth=1, key=KEY), outputs=("z",))
    with pytest.raises(ValueError, match="known"):
        UDE(lambda t, y, args: y, MLP(2, 2, width=4, depth=1, key=KEY))
    with pytest.raises(ValueError, match="fn"):
        HybridUDE("not a function", SIR(0.5, 0.1), {})


def _learned_rate(t, y, physics, nets):
    s, i = y[0], y[1]
    beta = jax.nn.softplus(nets["beta"](t, y)[0])
    g = physics.p("gamma")
    return jnp.stack([-beta * s * i, beta * s * i - g * i, g * i])


def test_hybrid_ude():
    """A learned infection rate inside a known law: with a zero network the rate is softplus(0)."""
    net = MLP(3, 1, width=4, depth=1, output_scale=0.0, key=KEY)
    model = HybridUDE(_learned_rate, SIR(0.5, 0.1), {"beta": net})
    assert model.state_names == ("S", "I", "R")
    ref = reference_field("sir", dict(beta=np.log(2.0), gamma=0.1))
    y = jnp.array([0.6, 0.3, 0.1])
    np.testing.assert_allclose(model(0.0, y), ref(0.0, np.asarray(y)), rtol=1e-14)
    # a hybrid model is a pytree: the network's weights are trainable, fixed physics is not
    params, _ = partition(model)
    assert params.physics.gamma.raw is None and params.physics.beta.raw is None
    assert count_params(model) == net.n_params
    g = jax.grad(lambda p: jnp.sum(eqx.combine(p, _)(0.0, y) ** 2))(params)
    assert np.any(np.asarray(g.networks["beta"].layers[-1].weight) != 0)


def _mixed_model():
    phys = LotkaVolterra(
        Parameter(1.3, trainable=True, positive=True), 0.9, Parameter(1.8, trainable=False), 0.8
    ).keep("growth", "death")
    net = MLP(2, 2, width=4, depth=1, input_scale=jnp.array([2.0, 3.0]), key=KEY)
    return UDE(phys, net)


def test_trainable_filter_and_partition():
    model = _mixed_model()
    spec = trainable_filter(model)
    assert spec.known.alpha.raw is True and spec.known.gamma.raw is False
    assert spec.known.beta.raw is False and spec.known.delta.raw is False
    assert spec.correction.input_scale is False
    assert all(s is True for layer in spec.correction.layers for s in (layer.weight, layer.bias))

    params, static = partition(model)
    assert params.known.gamma.raw is None and params.correction.input_scale is None
    assert params.known.alpha.raw is not None
    assert count_params(model) == model.correction.n_params + 1
    assert len(network_weights(model)) == 2 * len(model.correction.layers)
    assert sum(w.size for w in network_weights(model)) == model.correction.n_params
    # combine undoes partition
    y = POINTS[0]
    np.testing.assert_array_equal(eqx.combine(params, static)(0.0, y), model(0.0, y))

    only_physics, _ = partition(model, networks=False)
    leaves = jax.tree_util.tree_leaves(only_physics)
    assert len(leaves) == 1 and float(leaves[0]) == pytest.approx(np.log(1.3), rel=1e-15)


def test_gradients_respect_the_filter():
    """Fixed physics gets no gradient; the trainable (log-parametrised) one does, and matches the
    analytic derivative; network weights do; the input scale is frozen."""
    model = _mixed_model()
    params, static = partition(model)
    y = POINTS[1]

    def loss(p):
        return jnp.sum(eqx.combine(p, static)(0.0, y))

    g = jax.grad(loss)(params)
    assert g.known.gamma.raw is None and g.correction.input_scale is None
    # d/d raw of alpha*x with alpha = exp(raw) is alpha*x
    np.testing.assert_allclose(g.known.alpha.raw, 1.3 * y[0], rtol=1e-13)
    assert np.any(np.asarray(g.correction.layers[0].weight) != 0)
    # a trainable, not positive, parameter gets the plain derivative
    lin = UDE(LotkaVolterra(1.3, 0.9, Parameter(1.8, trainable=True), 0.8))
    p2, s2 = partition(lin)
    g2 = jax.grad(lambda p: eqx.combine(p, s2)(0.0, y)[1])(p2)
    np.testing.assert_allclose(g2.known.gamma.raw, -y[1], rtol=1e-14)
    assert g2.known.alpha.raw is None


def test_no_physics_ude_is_a_neural_ode():
    net = MLP(2, 2, width=4, depth=1, key=KEY)
    model = UDE(NoPhysics(), net)
    np.testing.assert_allclose(model(0.0, POINTS[0]), net(0.0, POINTS[0]), rtol=1e-14)
    assert count_params(model) == net.n_params


def test_ude_vmaps_and_jits():
    model = UDE(known(), MLP(2, 2, width=4, depth=1, key=KEY))
    batched = jax.vmap(lambda y: model(0.0, y))(POINTS)
    jitted = eqx.filter_jit(lambda m, y: m(0.0, y))
    for i, y in enumerate(POINTS):
        np.testing.assert_allclose(batched[i], model(0.0, y), rtol=1e-14)
        np.testing.assert_allclose(jitted(model, y), model(0.0, y), rtol=1e-14)
