"""Chapter 14's NumPy CartPole (nndl_helpers.chapters.ch14.CartPole) against gymnasium's CartPole-v1.

gymnasium is a test-only dependency: the notebook never imports it. The same seeds and the same action
sequences must give the same trajectories (observations, internal float64 states, rewards, terminated and
truncated flags, resets) to 1e-10, one environment at a time and vectorised.
"""
import numpy as np
import pytest

from nndl_helpers.chapters.ch14 import CartPole

gym = pytest.importorskip("gymnasium")

TOL = 1e-10


def _balancing_action(obs):
    """A simple controller (push towards where the pole is falling) that often lasts until the 500-step limit."""
    return int(obs[2] + 0.5 * obs[3] > 0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("controller", ["random", "balancing"])
def test_one_environment_replays_gymnasium(seed, controller):
    ref, ours = gym.make("CartPole-v1"), CartPole()
    obs_ref, _ = ref.reset(seed=seed)
    obs, info = ours.reset(seed=seed)
    assert obs.shape == (4,) and obs.dtype == np.float32 and info == {}
    assert np.array_equal(obs, obs_ref)
    actions = np.random.default_rng(1000 + seed)
    episodes, truncations = 0, 0
    for _ in range(1000):
        a = int(actions.integers(2)) if controller == "random" else _balancing_action(obs)
        obs_ref, r_ref, term_ref, trunc_ref, _ = ref.step(a)
        obs, r, term, trunc, info = ours.step(a)
        assert np.abs(obs - obs_ref).max() <= TOL
        assert np.abs(ours.state[0] - ref.unwrapped.state).max() <= TOL
        assert (r, term, trunc) == (r_ref, term_ref, trunc_ref)
        assert isinstance(r, float) and isinstance(term, bool) and isinstance(trunc, bool)
        if term or trunc:
            episodes, truncations = episodes + 1, truncations + trunc
            obs_ref, _ = ref.reset()                 # no new seed: both continue their generators
            obs, _ = ours.reset()
            assert np.array_equal(obs, obs_ref)
    assert episodes >= 2
    if controller == "balancing":
        assert truncations >= 1 or episodes >= 3


@pytest.mark.parametrize("seed", [0, 7, 123])
@pytest.mark.parametrize("num_envs", [1, 5, 16])
def test_vectorised_environments_replay_gymnasium(seed, num_envs):
    refs = [gym.make("CartPole-v1") for _ in range(num_envs)]
    ours = CartPole(num_envs)
    obs, _ = ours.reset(seed=seed)
    assert obs.shape == (num_envs, 4) and obs.dtype == np.float32
    assert np.array_equal(obs, np.stack([r.reset(seed=seed + i)[0] for i, r in enumerate(refs)]))
    rng = np.random.default_rng(seed)
    ended = 0
    for _ in range(400):
        a = rng.integers(2, size=num_envs)
        obs, r, term, trunc, info = ours.step(a)
        assert r.shape == term.shape == trunc.shape == (num_envs,)
        for i, ref in enumerate(refs):
            o_ref, r_ref, term_ref, trunc_ref, _ = ref.step(int(a[i]))
            assert (r[i], term[i], trunc[i]) == (r_ref, term_ref, trunc_ref)
            if term_ref or trunc_ref:                # same-step autoreset: the last observation is in info
                ended += 1
                assert np.abs(info["final_obs"][i] - o_ref).max() <= TOL
                o_ref, _ = ref.reset()
            assert np.abs(obs[i] - o_ref).max() <= TOL
            assert np.abs(ours.state[i] - ref.unwrapped.state).max() <= TOL
    assert ended >= num_envs


def test_time_limit_truncates_at_500():
    env = CartPole()
    env.reset(seed=0)
    env.state[0] = 0.0                               # upright and still: a balancing controller never fails
    steps, done = 0, False
    while not done:
        obs, _, term, trunc, _ = env.step(_balancing_action(env.state[0]))
        steps, done = steps + 1, term or trunc
    assert steps == 500 and trunc and not term


def test_bad_calls_get_clear_errors():
    env = CartPole()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (2, -1, 1.0, "left", np.array([0, 1])):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    done = False
    while not done:
        _, _, term, trunc, _ = env.step(1)
        done = term or trunc
    with pytest.raises(RuntimeError, match="ended"):
        env.step(0)
    env.reset()
    env.step(0)                                      # fine again after reset
    vec = CartPole(3)
    vec.reset(seed=0)
    for bad in (np.array([0, 1]), np.array([0, 1, 2]), np.array([0.0, 1.0, 0.0]), 1):
        with pytest.raises(ValueError, match="shape \\(3,\\)"):
            vec.step(bad)
    with pytest.raises(ValueError, match="num_envs"):
        CartPole(0)
