"""PyTorch code taught in notebooks/14_deep_reinforcement_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np
import time
from nndl_helpers.chapters.ch14 import CartPole, evaluate_policy


import torch
import torch.nn.functional as F
from torch import nn


def torch_policy_gradient_loss(logits, actions, weights):
    """-(1/N) sum_n w_n log softmax(z_n)[a_n] with torch operations (the autograd reference)."""
    log_p = F.log_softmax(logits, dim=1)
    return -(weights * log_p.gather(1, actions[:, None])[:, 0]).mean()


def torch_mlp(params, x):
    """A chapter-4 tanh MLP's output for a dict of tensors W1, b1, ..., WL, bL (the autograd reference)."""
    n = len(params) // 2
    for layer in range(1, n + 1):
        x = x @ params[f"W{layer}"] + params[f"b{layer}"]
        x = torch.tanh(x) if layer < n else x
    return x


class ReplayBuffer:
    """A ring buffer of transitions (s, a, r, s', terminated) held as tensors on `device`."""

    def __init__(self, capacity, obs_dim, device="cpu"):
        self.capacity, self.size, self.pos, self.device = int(capacity), 0, 0, device
        self.obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.actions = torch.zeros(self.capacity, dtype=torch.long, device=device)
        self.rewards = torch.zeros(self.capacity, device=device)
        self.terminated = torch.zeros(self.capacity, device=device)

    def add(self, obs, actions, rewards, next_obs, terminated):
        """Store a batch of N transitions (NumPy arrays from a vectorised environment)."""
        idx = torch.as_tensor((self.pos + np.arange(len(actions))) % self.capacity, device=self.device)
        for buf, x in ((self.obs, obs), (self.next_obs, next_obs), (self.actions, actions),
                       (self.rewards, rewards), (self.terminated, terminated)):
            buf[idx] = torch.as_tensor(np.asarray(x), device=self.device).to(buf.dtype)
        self.pos, self.size = (self.pos + len(actions)) % self.capacity, min(self.size + len(actions), self.capacity)

    def sample(self, batch_size, generator=None):
        i = torch.randint(self.size, (batch_size,), device=self.device, generator=generator)
        return self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.terminated[i]


def q_network(hidden=128, obs_dim=4, n_actions=2):
    return nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_actions))


def q_actor(q, device):
    """act(obs (N, 4) NumPy) = argmax_a Q(obs, a), for evaluate_policy and play_episodes."""
    def act(obs):
        with torch.no_grad():
            return q(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()
    return act


def train_dqn(total_steps, *, num_envs=8, hidden=128, lr=1e-3, batch_size=64, capacity=50_000, gamma=0.99,
              tau=0.01, eps_decay_steps=8_000, warmup=1_000, eval_every=4_000, seed=0, device="cpu"):
    """Double DQN with experience replay and a soft-updated target network on num_envs CartPoles.

    epsilon falls linearly from 1 to 0.05 over eps_decay_steps environment steps; one gradient step per
    step of all environments once `warmup` transitions are stored. Every eval_every steps the greedy
    policy plays 10 episodes (seeds 20,000+, never used for the final evaluation) and the best network
    so far is kept. Returns (best network, final network, history dict: env steps, return, seconds).
    """
    torch.manual_seed(seed)
    rng, gen = np.random.default_rng(seed), torch.Generator(device=device).manual_seed(seed)
    q, target = q_network(hidden).to(device), q_network(hidden).to(device)
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=lr)
    buffer, env, act = ReplayBuffer(capacity, 4, device), CartPole(num_envs), q_actor(q, device)
    obs, _ = env.reset(seed=seed)
    running, finished, steps, start = np.zeros(num_envs), [], 0, time.perf_counter()
    history, best = {"steps": [], "return": [], "seconds": []}, (-1.0, None)
    while steps < total_steps:
        epsilon = max(0.05, 1 - 0.95 * steps / eps_decay_steps)
        explore = rng.random(num_envs) < epsilon
        a = np.where(explore, rng.integers(2, size=num_envs), act(obs))
        next_obs, r, terminated, truncated, info = env.step(a)
        buffer.add(obs, a, r, info.get("final_obs", next_obs), terminated)   # s' before any reset
        running += r
        for i in np.flatnonzero(terminated | truncated):
            finished.append(running[i])
            running[i] = 0
        obs, steps = next_obs, steps + num_envs
        if buffer.size >= warmup:
            s, a_t, r_t, s2, done = buffer.sample(batch_size, gen)
            with torch.no_grad():                      # double DQN: q picks a', the target network scores it
                a2 = q(s2).argmax(dim=1, keepdim=True)
                y = r_t + gamma * (1 - done) * target(s2).gather(1, a2)[:, 0]
            loss = F.smooth_l1_loss(q(s).gather(1, a_t[:, None])[:, 0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():                      # theta- <- (1 - tau) theta- + tau theta
                torch._foreach_lerp_(list(target.parameters()), list(q.parameters()), tau)
        if steps % eval_every < num_envs and steps >= warmup:
            score = evaluate_policy(act, 10, seed=20_000).mean()
            if score >= best[0]:
                best = (score, {k: v.clone() for k, v in q.state_dict().items()})
        if finished and steps % 1_000 < num_envs:
            for key, v in zip(history, (steps, np.mean(finished[-20:]), time.perf_counter() - start)):
                history[key].append(v)
    best_q = q_network(hidden).to(device)
    best_q.load_state_dict(best[1] if best[1] is not None else q.state_dict())
    return best_q, q, history
