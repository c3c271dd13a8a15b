"""NumPy code taught in notebooks/14_deep_reinforcement_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import time

import numpy as np

from nndl_helpers.chapters.ch03 import log_softmax, softmax
from nndl_helpers.chapters.ch04a import MLP, half_mse_loss
from nndl_helpers.chapters.ch07a import Adam

MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))   # actions 0..3: up, right, down, left
ARROWS = "↑→↓←"


class GridWorld:
    """Cliff walking (Sutton & Barto, example 6.6) as a finite MDP with a known model.

    States s = row * cols + col. The agent starts bottom left, the goal (terminal, absorbing) is bottom
    right, the cells between them are a cliff: every move costs step_reward, a move into the cliff costs
    cliff_reward and puts the agent back on the start; a move off the grid leaves it in place.
    P (S, A, S) and R (S, A) are the model (for dynamic programming); step(s, a) -> (s', r, done) is all
    that the model-free methods may use.
    """

    def __init__(self, rows=4, cols=12, step_reward=-1.0, cliff_reward=-100.0):
        if rows < 2 or cols < 3:
            raise ValueError(f"the grid needs at least 2 rows and 3 columns, got {rows} x {cols}")
        self.rows, self.cols, self.rewards = int(rows), int(cols), (float(step_reward), float(cliff_reward))
        self.n_states, self.n_actions = self.rows * self.cols, len(MOVES)
        self.start, self.goal = (self.rows - 1) * self.cols, self.rows * self.cols - 1
        self.cliff = np.zeros(self.n_states, dtype=bool)
        self.cliff[self.start + 1:self.goal] = True
        self.terminal = np.zeros(self.n_states, dtype=bool)
        self.terminal[self.goal] = True
        self.P = np.zeros((self.n_states, self.n_actions, self.n_states))
        self.R = np.zeros((self.n_states, self.n_actions))
        for s in range(self.n_states):
            for a in range(self.n_actions):
                s2, r, _ = (s, 0.0, True) if self.terminal[s] else self._move(s, a)
                self.P[s, a, s2], self.R[s, a] = 1.0, r

    def _move(self, s, a):
        row, col = divmod(s, self.cols)
        row = min(max(row + MOVES[a][0], 0), self.rows - 1)
        col = min(max(col + MOVES[a][1], 0), self.cols - 1)
        s2 = row * self.cols + col
        if self.cliff[s2]:
            return self.start, self.rewards[1], False
        return s2, self.rewards[0], bool(self.terminal[s2])

    def step(self, s, a):
        """One move from state s with action a: (next state, reward, done)."""
        if not (isinstance(a, (int, np.integer)) and 0 <= a < self.n_actions):
            raise ValueError(f"action must be an int in 0..{self.n_actions - 1} ({ARROWS}), got {a!r}")
        if not 0 <= s < self.n_states or self.terminal[s] or self.cliff[s]:
            raise ValueError(f"no move starts in state {s!r}: it is off the grid, the goal or the cliff")
        return self._move(s, a)


def check_policy(policy, n_states, n_actions):
    """A stochastic policy pi (S, A) as float64; ValueError unless every row is probabilities summing to 1."""
    policy = np.asarray(policy, dtype=np.float64)
    if policy.shape != (n_states, n_actions):
        raise ValueError(f"policy must have shape ({n_states}, {n_actions}), got {policy.shape}")
    sums = policy.sum(axis=1)
    if (policy < 0).any() or np.abs(sums - 1).max() > 1e-8:
        bad = int(np.argmax(np.abs(sums - 1) + (policy < 0).any(axis=1)))
        raise ValueError(f"each row of the policy must hold probabilities summing to 1: row {bad} is "
                         f"{np.round(policy[bad], 4).tolist()} (sum {sums[bad]:.6g})")
    return policy


def policy_evaluation(P, R, policy, gamma, tol=1e-12, max_sweeps=100_000):
    """Iterative policy evaluation: sweep V <- sum_a pi(a|s) [R(s,a) + gamma P V] until max |change| < tol.

    Returns V (S,) and the number of sweeps.
    """
    policy = check_policy(policy, *R.shape)
    V = np.zeros(len(R))
    for sweep in range(1, max_sweeps + 1):
        V_new = np.sum(policy * (R + gamma * P @ V), axis=1)
        if np.abs(V_new - V).max() < tol:
            return V_new, sweep
        V = V_new
    raise RuntimeError(f"policy evaluation did not converge in {max_sweeps} sweeps (gamma={gamma})")


def bellman_linear_solve(P, R, policy, gamma, terminal):
    """V^pi exactly: solve (I - gamma P_pi) v = r_pi on the non-terminal states (V = 0 on terminal ones)."""
    policy = check_policy(policy, *R.shape)
    P_pi = np.einsum("sa,sat->st", policy, P)
    r_pi = np.sum(policy * R, axis=1)
    live = ~np.asarray(terminal, dtype=bool)
    V = np.zeros(len(R))
    V[live] = np.linalg.solve(np.eye(live.sum()) - gamma * P_pi[np.ix_(live, live)], r_pi[live])
    return V


def epsilon_greedy_policy(Q, epsilon=0.0):
    """pi (S, A): probability 1 - epsilon + epsilon / A on the greedy action (first of ties), epsilon / A elsewhere."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon!r}")
    policy = np.full(Q.shape, epsilon / Q.shape[1])
    policy[np.arange(len(Q)), Q.argmax(axis=1)] += 1 - epsilon
    return policy


def policy_iteration(P, R, gamma, terminal, max_iterations=1000):
    """Evaluate the policy exactly, make it greedy, repeat until it is stable (from the uniform random policy).

    Returns V (S,), the greedy policy (S, A) and the number of iterations.
    """
    policy = np.full(R.shape, 1.0 / R.shape[1])
    for iteration in range(1, max_iterations + 1):
        V = bellman_linear_solve(P, R, policy, gamma, terminal)
        Q = np.round(R + gamma * P @ V, 10)        # rounding makes ties exact, so argmax is stable
        new_policy = epsilon_greedy_policy(Q, 0.0)
        if np.array_equal(new_policy, policy):
            return V, policy, iteration
        policy = new_policy
    raise RuntimeError(f"policy iteration did not stabilise in {max_iterations} iterations")


def value_iteration(P, R, gamma, epsilon=0.0, tol=1e-12, max_sweeps=100_000):
    """Sweep Q(s,a) <- R(s,a) + gamma sum_s' P(s'|s,a) sum_a' pi_eps(a'|s') Q(s',a') until max |change| < tol.

    epsilon = 0 is value iteration (the max over a'); epsilon > 0 the best epsilon-greedy policy's values.
    Returns Q (S, A) and the number of sweeps.
    """
    Q = np.zeros(R.shape)
    for sweep in range(1, max_sweeps + 1):
        V = np.sum(epsilon_greedy_policy(Q, epsilon) * Q, axis=1)
        Q_new = R + gamma * P @ V
        if np.abs(Q_new - Q).max() < tol:
            return Q_new, sweep
        Q = Q_new
    raise RuntimeError(f"value iteration did not converge in {max_sweeps} sweeps (gamma={gamma}, epsilon={epsilon})")


def epsilon_greedy_action(q_row, epsilon, rng):
    """A random action with probability epsilon, else a greedy one of q_row (A,), ties broken at random."""
    if rng.random() < epsilon:
        return int(rng.integers(len(q_row)))
    best = np.flatnonzero(q_row == q_row.max())
    return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])


def td_control(env, method, episodes, *, alpha=0.5, epsilon=0.1, gamma=1.0, seed=0, max_steps=10_000, every=10):
    """SARSA (method "sarsa") or Q-learning ("q_learning") from the start state, Q initialised to 0.

    Returns Q (S, A), the return of every training episode (episodes,) and copies of Q after every
    `every` episodes (to draw what the greedy policy would have done during training).
    """
    if method not in ("sarsa", "q_learning"):
        raise ValueError(f"method must be 'sarsa' or 'q_learning', got {method!r}")
    rng = np.random.default_rng(seed)
    Q, snapshots = np.zeros((env.n_states, env.n_actions)), []
    returns = np.zeros(episodes)
    for episode in range(episodes):
        s = env.start
        a = epsilon_greedy_action(Q[s], epsilon, rng)
        for _ in range(max_steps):
            s2, r, done = env.step(s, a)
            returns[episode] += r
            a2 = epsilon_greedy_action(Q[s2], epsilon, rng)
            if done:
                target = r
            elif method == "sarsa":
                target = r + gamma * Q[s2, a2]          # the action it will take
            else:
                target = r + gamma * Q[s2].max()        # the greedy action, whatever it takes
            Q[s, a] += alpha * (target - Q[s, a])
            if done:
                break
            s, a = s2, a2
        if (episode + 1) % every == 0:
            snapshots.append(Q.copy())
    return Q, returns, snapshots


def mc_control(env, episodes, *, epsilon=0.1, gamma=1.0, seed=0, max_steps=100, every=10):
    """First-visit Monte Carlo control, epsilon-greedy, exploring starts (a random non-cliff, non-goal cell).

    Q(s, a) is the running mean of the returns that followed the first visit of (s, a) in each episode.
    Returns Q (S, A), the return of every training episode and copies of Q every `every` episodes.
    """
    rng = np.random.default_rng(seed)
    Q, N, snapshots = np.zeros((env.n_states, env.n_actions)), np.zeros((env.n_states, env.n_actions)), []
    starts = np.flatnonzero(~env.cliff & ~env.terminal)
    returns = np.zeros(episodes)
    for episode in range(episodes):
        s, trajectory = int(rng.choice(starts)), []
        for _ in range(max_steps):
            a = epsilon_greedy_action(Q[s], epsilon, rng)
            s2, r, done = env.step(s, a)
            trajectory.append((s, a, r))
            s = s2
            if done:
                break
        first = {}
        for t, (s, a, _) in enumerate(trajectory):
            first.setdefault((s, a), t)
        G = 0.0
        for t in range(len(trajectory) - 1, -1, -1):
            s, a, r = trajectory[t]
            G = r + gamma * G
            if first[(s, a)] == t:
                N[s, a] += 1
                Q[s, a] += (G - Q[s, a]) / N[s, a]
        returns[episode] = G
        if (episode + 1) % every == 0:
            snapshots.append(Q.copy())
    return Q, returns, snapshots


def greedy_path(env, Q, max_steps=100):
    """The states visited from the start when always taking argmax_a Q(s, a), up to the goal or max_steps moves."""
    s, path = env.start, [env.start]
    for _ in range(max_steps):
        s, _, done = env.step(s, int(Q[s].argmax()))
        path.append(s)
        if done:
            break
    return path


CARTPOLE = {"gravity": 9.8, "masscart": 1.0, "masspole": 0.1, "length": 0.5, "force_mag": 10.0, "tau": 0.02,
            "theta_threshold": 12 * 2 * np.pi / 360, "x_threshold": 2.4}   # CartPole-v1's constants


def cartpole_dynamics(state, action):
    """One Euler step of 0.02 s for states (N, 4) = (x, x_dot, theta, theta_dot) and actions (N,) in {0, 1}.

    The same operations in the same order as gymnasium's CartPoleEnv.step, so the results agree to the last bit.
    """
    c = CARTPOLE
    total_mass, polemass_length = c["masspole"] + c["masscart"], c["masspole"] * c["length"]
    x, x_dot, theta, theta_dot = state.T
    force = np.where(action == 1, c["force_mag"], -c["force_mag"])
    costheta, sintheta = np.cos(theta), np.sin(theta)
    temp = (force + polemass_length * np.square(theta_dot) * sintheta) / total_mass
    thetaacc = (c["gravity"] * sintheta - costheta * temp) / (
        c["length"] * (4.0 / 3.0 - c["masspole"] * np.square(costheta) / total_mass))
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
    tau = c["tau"]
    return np.stack([x + tau * x_dot, x_dot + tau * xacc, theta + tau * theta_dot, theta_dot + tau * thetaacc], axis=1)


def check_actions(action, num_envs):
    """CartPole's actions as an int array (N,); ValueError unless they are 0 (push left) or 1 (push right)
    and, for num_envs=None, one int, else an int array of shape (num_envs,)."""
    a = np.asarray(action)
    shape = () if num_envs is None else (num_envs,)
    if a.shape != shape or not np.issubdtype(a.dtype, np.integer) or ((a != 0) & (a != 1)).any():
        want = "an int, 0 (push left) or 1 (push right)" if num_envs is None else f"an int array of shape ({num_envs},) in {{0, 1}}"
        raise ValueError(f"action must be {want}; got {action!r}" if a.size < 10 else
                         f"action must be {want}; got {a.dtype} array of shape {a.shape}")
    return a.reshape(-1)


class CartPole:
    """CartPole-v1 in NumPy with gymnasium's interface, for one environment or many at once.

    num_envs=None  one environment, as gymnasium.make("CartPole-v1"): reset(seed) -> (obs (4,), info);
                   step(action int) -> (obs (4,), reward float, terminated bool, truncated bool, info).
                   Stepping an episode that has ended raises RuntimeError until reset() is called.
    num_envs=N     N environments: reset(seed) seeds environment i with seed + i; step(actions (N,)) returns
                   arrays (N, 4), (N,), (N,), (N,). An environment whose episode ends is reset at once from
                   its own generator, and info["final_obs"] (N, 4) holds the observations before the resets
                   (gymnasium's same-step autoreset).
    States are float64, observations float32; the reward is 1 for every step, the last one included.
    """

    n_actions, obs_dim = 2, 4

    def __init__(self, num_envs=None, max_episode_steps=500):
        if num_envs is not None and not (isinstance(num_envs, (int, np.integer)) and num_envs >= 1):
            raise ValueError(f"num_envs must be None (one environment) or an int >= 1, got {num_envs!r}")
        self.num_envs, self.max_episode_steps = num_envs, int(max_episode_steps)
        n = 1 if num_envs is None else int(num_envs)
        self.rngs = [np.random.default_rng() for _ in range(n)]
        self.state, self.elapsed, self.ended = None, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)

    def _reset(self, idx):
        for i in idx:
            self.state[i] = self.rngs[i].uniform(low=-0.05, high=0.05, size=(4,))
        self.elapsed[idx], self.ended[idx] = 0, False

    def reset(self, *, seed=None):
        if seed is not None:
            self.rngs = [np.random.default_rng(seed + i) for i in range(len(self.rngs))]
        self.state = np.zeros((len(self.rngs), 4))
        self._reset(range(len(self.rngs)))
        obs = self.state.astype(np.float32)
        return (obs[0] if self.num_envs is None else obs), {}

    def step(self, action):
        a = check_actions(action, self.num_envs)
        if self.state is None:
            raise RuntimeError("call reset() before the first step()")
        if self.num_envs is None and self.ended[0]:
            raise RuntimeError("the episode has ended (terminated or truncated): call reset() before step()")
        self.state = cartpole_dynamics(self.state, a)
        x, theta = self.state[:, 0], self.state[:, 2]
        terminated = (np.abs(x) > CARTPOLE["x_threshold"]) | (np.abs(theta) > CARTPOLE["theta_threshold"])
        self.elapsed += 1
        truncated = (self.elapsed >= self.max_episode_steps) & ~terminated
        obs, reward = self.state.astype(np.float32), np.ones(len(a))
        if self.num_envs is None:
            self.ended[0] = terminated[0] or truncated[0]
            return obs[0], 1.0, bool(terminated[0]), bool(truncated[0]), {}
        info, ended = {}, np.flatnonzero(terminated | truncated)
        if len(ended):
            info["final_obs"] = obs.copy()
            self._reset(ended)
            obs[ended] = self.state[ended].astype(np.float32)
        return obs, reward, terminated, truncated, info


def sample_actions(probs, rng):
    """One action per row of probs (N, A) by the inverse CDF; ValueError unless each row is a distribution."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, A) action probabilities, got shape {probs.shape}")
    sums = probs.sum(axis=1)
    if (probs < 0).any() or not np.allclose(sums, 1.0, atol=1e-6):
        bad = int(np.argmax(np.abs(sums - 1)))
        raise ValueError(f"each row of probs must be non-negative and sum to 1; row {bad} sums to {sums[bad]:.6g}")
    u = rng.random((len(probs), 1))
    return np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)


def policy_gradient_loss(logits, actions, weights):
    """The REINFORCE surrogate L = -(1/N) sum_n w_n log softmax(z_n)[a_n], and dL/dz.

    Inputs:  logits z (N, A); actions (N,) ints in [0, A); weights w (N,): returns, advantages (held fixed).
    Returns: loss (float) and dlogits (N, A) = w_n (softmax(z_n) - onehot(a_n)) / N.
    Minimising L by gradient descent moves theta along the policy-gradient estimate.
    """
    logits, actions, weights = np.asarray(logits), np.asarray(actions), np.asarray(weights)
    n = len(logits)
    if logits.ndim != 2 or actions.shape != (n,) or weights.shape != (n,):
        raise ValueError(f"policy_gradient_loss: logits (N, A), actions (N,), weights (N,); got "
                         f"{logits.shape}, {actions.shape}, {weights.shape}")
    if not np.issubdtype(actions.dtype, np.integer) or (n and (actions.min() < 0 or actions.max() >= logits.shape[1])):
        raise ValueError(f"actions must be ints in [0, {logits.shape[1]}), got {actions.dtype} {actions[:5]}")
    log_p = log_softmax(logits)
    rows = np.arange(n)
    loss = -np.mean(weights * log_p[rows, actions])
    dlogits = np.exp(log_p)
    dlogits[rows, actions] -= 1
    return float(loss), dlogits * (weights / n)[:, None].astype(logits.dtype)


def discounted_returns(rewards, gamma):
    """G_t = r_{t+1} + gamma G_{t+1} backwards over time, for rewards (T, ...) of episodes that end at T."""
    returns, g = np.zeros_like(rewards, dtype=np.float64), np.zeros(np.shape(rewards)[1:])
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        returns[t] = g
    return returns


def value_regression_gradients(value, obs, returns):
    """The critic's regression on the returns: V(s) (N,) and the gradients of half_mse_loss(V(s), G)."""
    v, v_cache = value.forward(obs)
    _, dv = half_mse_loss(v, np.asarray(returns)[:, None].astype(v.dtype))
    grads = value.backward(dv, v_cache)
    del grads["x"]
    return v[:, 0], grads


def reinforce_gradients(policy, obs, actions, returns, value=None):
    """Gradients of one REINFORCE update for an MLP policy (logits) and an optional MLP value baseline.

    obs (N, 4), actions (N,), returns G_t (N,). With `value`, the weights are G_t - V(s_t) and the value
    network is regressed on G_t (half_mse_loss); without it, the weights are G_t.
    Returns (policy grads, value grads or None, the weights used).
    """
    value_grads, weights = None, np.asarray(returns, dtype=np.float64)
    if value is not None:
        v, value_grads = value_regression_gradients(value, obs, returns)
        weights = weights - v
    logits, cache = policy.forward(obs)
    _, dlogits = policy_gradient_loss(logits, actions, weights)
    grads = policy.backward(dlogits, cache)
    del grads["x"]
    return grads, value_grads, weights


def make_agent(hidden=64, seed=0, dtype=np.float32):
    """A policy MLP 4 -> hidden (tanh) -> 2 logits and a value MLP 4 -> hidden (tanh) -> 1."""
    policy = MLP([CartPole.obs_dim, hidden, CartPole.n_actions], "tanh", output="softmax", seed=seed, dtype=dtype)
    value = MLP([CartPole.obs_dim, hidden, 1], "tanh", output="linear", seed=seed + 1, dtype=dtype)
    return policy, value


def play_episodes(env, act, seed=None):
    """The first episode of every environment of a vectorised CartPole, with actions act(obs (N, 4)) -> (N,).

    Returns obs (T, N, 4), actions (T, N), alive (T, N) (True while the episode of that column runs)
    and the episode lengths (N,) = returns, since every step earns 1.
    """
    obs, _ = env.reset(seed=seed)
    alive = np.ones(env.num_envs, dtype=bool)
    observations, actions, masks = [], [], []
    while alive.any():
        a = act(obs)
        observations.append(obs), actions.append(a), masks.append(alive.copy())
        obs, _, terminated, truncated, _ = env.step(a)
        alive &= ~(terminated | truncated)
    masks = np.array(masks)
    return np.array(observations), np.array(actions), masks, masks.sum(axis=0)


def evaluate_policy(act, episodes=100, seed=10_000):
    """Returns (episodes,) of act on CartPole-v1, one vectorised batch, seeds seed .. seed + episodes - 1."""
    return play_episodes(CartPole(episodes), act, seed=seed)[3].astype(np.float64)


def greedy_actor(policy):
    """act(obs) = argmax_a pi(a | obs) of a NumPy policy MLP."""
    return lambda obs: policy(obs).argmax(axis=1)


def sampling_actor(policy, rng):
    """act(obs) ~ pi(. | obs) of a NumPy policy MLP."""
    return lambda obs: sample_actions(softmax(policy(obs).astype(np.float64)), rng)


def train_reinforce(total_steps, *, baseline=True, episodes_per_update=16, lr=1e-2, value_lr=1e-2,
                    value_steps=10, gamma=0.99, hidden=64, seed=0):
    """REINFORCE, with a learned value baseline or without, until total_steps environment steps are used.

    Each update plays episodes_per_update episodes at once and takes one Adam step on the policy (and
    value_steps on the value network, which has to follow a policy that changes). Returns policy, value and a history dict of lists: env steps, mean return, seconds.
    """
    rng = np.random.default_rng(seed)
    policy, value = make_agent(hidden, seed)
    opt_pi, opt_v = Adam(lr=lr), Adam(lr=value_lr)
    env, act = CartPole(episodes_per_update), sampling_actor(policy, rng)
    env.reset(seed=seed)
    history, steps, start = {"steps": [], "return": [], "seconds": []}, 0, time.perf_counter()
    while steps < total_steps:
        obs, actions, alive, lengths = play_episodes(env, act)
        G = discounted_returns(alive.astype(np.float64), gamma)          # reward 1 while alive
        g_pi, g_v, _ = reinforce_gradients(policy, obs[alive], actions[alive], G[alive],
                                           value if baseline else None)
        opt_pi.step(policy.params, g_pi)
        for _ in range(value_steps if baseline else 0):
            opt_v.step(value.params, g_v)
            g_v = value_regression_gradients(value, obs[alive], G[alive])[1]
        steps += int(alive.sum())
        for key, v in zip(history, (steps, lengths.mean(), time.perf_counter() - start)):
            history[key].append(v)
    return policy, value, history


def train_actor_critic(total_steps, *, num_envs=16, n_steps=8, lr=7e-4, value_lr=3e-3, gamma=0.99,
                       hidden=64, seed=0):
    """Advantage actor-critic (A2C): num_envs environments, an update every n_steps steps of all of them.

    Targets are n-step returns bootstrapped with the value network (0 after a termination, V of the final
    observation after a truncation); the policy's weights are the advantages G - V(s).
    Returns policy, value and a history dict: env steps, mean return of the last 20 finished episodes, seconds.
    """
    rng = np.random.default_rng(seed)
    policy, value = make_agent(hidden, seed)
    opt_pi, opt_v = Adam(lr=lr), Adam(lr=value_lr)
    env, act = CartPole(num_envs), sampling_actor(policy, rng)
    obs, _ = env.reset(seed=seed)
    running, finished = np.zeros(num_envs), []
    history, steps, start = {"steps": [], "return": [], "seconds": []}, 0, time.perf_counter()
    while steps < total_steps:
        observations, actions, rewards, ended, bootstrap = [], [], [], [], []
        for _ in range(n_steps):
            a = act(obs)
            next_obs, r, terminated, truncated, info = env.step(a)
            observations.append(obs), actions.append(a), rewards.append(r), ended.append(terminated | truncated)
            v_end = np.zeros(num_envs)                      # V after a termination is 0 ...
            if truncated.any():                             # ... after a truncation the state had a future
                v_end[truncated] = value(info["final_obs"][truncated])[:, 0]
            bootstrap.append(v_end)
            running += r
            for i in np.flatnonzero(terminated | truncated):
                finished.append(running[i])
                running[i] = 0
            obs = next_obs
        G, targets = value(obs)[:, 0].astype(np.float64), np.zeros((n_steps, num_envs))
        for t in range(n_steps - 1, -1, -1):
            G = rewards[t] + gamma * np.where(ended[t], bootstrap[t], G)
            targets[t] = G
        # the same two gradients as REINFORCE with a baseline, only the targets are bootstrapped
        g_pi, g_v, _ = reinforce_gradients(policy, np.concatenate(observations), np.concatenate(actions),
                                           targets.reshape(-1), value)
        opt_pi.step(policy.params, g_pi)
        opt_v.step(value.params, g_v)
        steps += n_steps * num_envs
        if finished:
            for key, v in zip(history, (steps, np.mean(finished[-20:]), time.perf_counter() - start)):
                history[key].append(v)
    return policy, value, history
