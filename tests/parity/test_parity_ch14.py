"""Chapter 14 (notebooks/14_deep_reinforcement_learning.ipynb): the policy-gradient loss and the REINFORCE /
actor-critic gradients of nndl_helpers.chapters.ch14 against torch.autograd in float64; the dynamic programming
against an exact solve; the input errors; and the PyTorch DQN's pieces."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch14 import (GridWorld, bellman_linear_solve, check_policy, discounted_returns,
                                        epsilon_greedy_policy, greedy_path, make_agent, policy_evaluation,
                                        policy_gradient_loss, policy_iteration, reinforce_gradients,
                                        sample_actions, td_control, value_iteration,
                                        value_regression_gradients)
from nndl_helpers.chapters.ch14_torch import (ReplayBuffer, q_actor, q_network, torch_mlp,
                                              torch_policy_gradient_loss, train_dqn)

TOL = 1e-6


@pytest.mark.parametrize("shape", [(1, 2), (5, 2), (9, 3), (64, 6)])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_policy_gradient_loss_matches_autograd(shape, scale):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    logits = scale * rng.standard_normal(shape)
    actions = rng.integers(shape[1], size=shape[0])
    weights = 50 * rng.standard_normal(shape[0])
    loss, dlogits = policy_gradient_loss(logits, actions, weights)
    inputs = {"logits": logits, "actions": actions, "weights": weights}
    ref = nh.autograd_gradients(torch_policy_gradient_loss, inputs, wrt=["logits"])
    ref_loss = torch_policy_gradient_loss(*(torch.as_tensor(v) for v in inputs.values())).item()
    assert abs(loss - ref_loss) <= 1e-10 * max(1.0, abs(ref_loss))
    assert nh.rel_error(dlogits, ref["logits"]) < TOL


def test_policy_gradient_loss_is_weighted_cross_entropy():
    """With weights 1 the surrogate is the softmax cross-entropy of the taken actions."""
    rng = np.random.default_rng(0)
    logits, actions = rng.standard_normal((6, 3)), rng.integers(3, size=6)
    loss, _ = policy_gradient_loss(logits, actions, np.ones(6))
    ref = F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(actions)).item()
    assert abs(loss - ref) < 1e-12


@pytest.mark.parametrize("bad", [dict(actions=np.array([0, 2])), dict(actions=np.array([0.0, 1.0])),
                                 dict(weights=np.ones(3)), dict(logits=np.zeros(2))])
def test_policy_gradient_loss_rejects_bad_input(bad):
    args = {"logits": np.zeros((2, 2)), "actions": np.array([0, 1]), "weights": np.ones(2)} | bad
    with pytest.raises(ValueError):
        policy_gradient_loss(**args)


@pytest.mark.parametrize("hidden,n", [(3, 1), (6, 9), (16, 40)])
@pytest.mark.parametrize("baseline", [False, True])
def test_reinforce_gradients_match_autograd(hidden, n, baseline):
    rng = np.random.default_rng(hidden + n)
    policy, value = make_agent(hidden, seed=hidden, dtype=np.float64)
    obs, actions, returns = rng.standard_normal((n, 4)), rng.integers(2, size=n), 30 * rng.random(n)
    g_pi, g_v, weights = reinforce_gradients(policy, obs, actions, returns, value if baseline else None)
    expected_weights = returns - value(obs)[:, 0] if baseline else returns
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-12, atol=1e-12)

    def policy_loss(obs, a, w, **p):
        return torch_policy_gradient_loss(torch_mlp(p, obs), a, w)

    ref = nh.autograd_gradients(policy_loss, {"obs": obs, "a": actions, "w": weights, **policy.params},
                                wrt=list(policy.params))
    assert set(g_pi) == set(policy.params)
    for k in policy.params:
        assert nh.rel_error(g_pi[k], ref[k]) < TOL, k
    if baseline:
        def value_loss(obs, G, **p):
            return 0.5 * ((torch_mlp(p, obs)[:, 0] - G) ** 2).mean()

        ref_v = nh.autograd_gradients(value_loss, {"obs": obs, "G": returns, **value.params}, wrt=list(value.params))
        for k in value.params:
            assert nh.rel_error(g_v[k], ref_v[k]) < TOL, k
    else:
        assert g_v is None


def test_value_regression_gradients_match_autograd():
    rng = np.random.default_rng(5)
    _, value = make_agent(8, seed=2, dtype=np.float64)
    obs, G = rng.standard_normal((12, 4)), 100 * rng.random(12)
    v, grads = value_regression_gradients(value, obs, G)
    np.testing.assert_allclose(v, value(obs)[:, 0])
    ref = nh.autograd_gradients(lambda obs, G, **p: 0.5 * ((torch_mlp(p, obs)[:, 0] - G) ** 2).mean(),
                                {"obs": obs, "G": G, **value.params}, wrt=list(value.params))
    assert max(nh.rel_error(grads[k], ref[k]) for k in value.params) < TOL


def test_discounted_returns():
    rewards = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])      # episodes of length 3 and 1
    G = discounted_returns(rewards, 0.5)
    np.testing.assert_allclose(G, [[1.75, 1.0], [1.5, 0.0], [1.0, 0.0]])
    rng = np.random.default_rng(0)
    r = rng.standard_normal(20)
    G = discounted_returns(r[:, None], 0.9)[:, 0]
    assert np.allclose(G, [sum(0.9 ** k * r[t + k] for k in range(20 - t)) for t in range(20)])


def test_sample_actions_follows_the_distribution_and_rejects_non_distributions():
    probs = np.tile([0.2, 0.5, 0.3], (100_000, 1))
    a = sample_actions(probs, np.random.default_rng(0))
    assert a.dtype.kind == "i" and set(np.unique(a)) == {0, 1, 2}
    np.testing.assert_allclose(np.bincount(a) / len(a), [0.2, 0.5, 0.3], atol=0.01)
    assert (sample_actions(np.array([[0.0, 1.0]] * 50), np.random.default_rng(1)) == 1).all()
    for bad in (np.array([[0.5, 0.6]]), np.array([[1.2, -0.2]]), np.array([0.5, 0.5])):
        with pytest.raises(ValueError):
            sample_actions(bad, np.random.default_rng(0))


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99])
def test_dynamic_programming_agrees_with_the_exact_solve(gamma):
    grid = GridWorld()
    uniform = np.full((grid.n_states, grid.n_actions), 0.25)
    V, _ = policy_evaluation(grid.P, grid.R, uniform, gamma)
    assert np.abs(V - bellman_linear_solve(grid.P, grid.R, uniform, gamma, grid.terminal)).max() < 1e-8
    V_pi, _, _ = policy_iteration(grid.P, grid.R, gamma, grid.terminal)
    Q, _ = value_iteration(grid.P, grid.R, gamma)
    exact = bellman_linear_solve(grid.P, grid.R, epsilon_greedy_policy(Q), gamma, grid.terminal)
    assert np.abs(Q.max(axis=1) - exact).max() < 1e-8 and np.abs(V_pi - exact).max() < 1e-8
    assert len(greedy_path(grid, Q)) - 1 == 13                   # the cliff edge


def test_q_learning_finds_the_cliff_edge_and_sarsa_the_safe_path():
    grid = GridWorld()
    Q_q, _, _ = td_control(grid, "q_learning", 300, seed=0)
    Q_s, _, _ = td_control(grid, "sarsa", 300, seed=0)
    assert len(greedy_path(grid, Q_q)) - 1 == 13
    safe = greedy_path(grid, Q_s)
    assert safe[-1] == grid.goal and min(s // grid.cols for s in safe) < grid.rows - 2


def test_grid_world_and_policies_reject_bad_input():
    grid = GridWorld()
    with pytest.raises(ValueError, match="sum"):
        check_policy(np.full((grid.n_states, 4), 0.3), grid.n_states, 4)
    with pytest.raises(ValueError, match="shape"):
        check_policy(np.full((3, 4), 0.25), grid.n_states, 4)
    with pytest.raises(ValueError, match="action"):
        grid.step(grid.start, 4)
    with pytest.raises(ValueError, match="state"):
        grid.step(grid.goal, 0)
    with pytest.raises(ValueError):
        td_control(grid, "expected_sarsa", 1)
    with pytest.raises(ValueError):
        epsilon_greedy_policy(np.zeros((2, 2)), 1.5)


def test_replay_buffer_wraps_around():
    buf = ReplayBuffer(5, 4)
    for k in range(3):
        buf.add(np.full((2, 4), k, dtype=np.float32), np.array([0, 1]), np.ones(2),
                np.full((2, 4), k + 1, dtype=np.float32), np.array([False, True]))
    assert buf.size == 5 and buf.pos == 1
    assert buf.obs[0, 0].item() == 2 and buf.terminated.sum().item() in (2.0, 3.0)
    s, a, r, s2, done = buf.sample(7, torch.Generator().manual_seed(0))
    assert s.shape == (7, 4) and a.dtype == torch.long and torch.all(s2 == s + 1)


def test_dqn_trains_and_acts():
    best, final, history = train_dqn(1_600, warmup=400, eval_every=800, seed=0)
    act = q_actor(best, "cpu")
    a = act(np.zeros((3, 4), dtype=np.float32))
    assert a.shape == (3,) and set(a) <= {0, 1}
    assert history["steps"] and history["steps"][-1] <= 1_600
    assert isinstance(q_network(16)(torch.zeros(1, 4)), torch.Tensor)
