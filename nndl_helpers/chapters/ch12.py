"""NumPy code taught in notebooks/12_deep_belief_networks.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np
from scipy.special import logsumexp     # log sum exp(a), computed without overflow

from nndl_helpers.chapters.ch03 import sigmoid, softplus


def check_binary(X, name="v"):
    """X as an array, after checking that every entry is 0 or 1 (a Bernoulli unit has no other state)."""
    X = np.asarray(X)
    ok = (X == 0) | (X == 1)
    if not ok.all():
        raise ValueError(f"{name} must be binary (0/1) for Bernoulli units; got values such as "
                         f"{X[~ok].ravel()[:3].tolist()} (binarise first: X > 0.5, or sample_bernoulli(X, rng))")
    return X


def check_temperature(T):
    if isinstance(T, bool) or not isinstance(T, (int, float, np.floating)) or not T > 0:
        raise ValueError(f"temperature T must be a number > 0, got {T!r}")
    return float(T)


def check_steps(k, name="k"):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} (Gibbs steps) must be an integer >= 1, got {k!r}")
    return int(k)


def all_states(n):
    """Every binary vector of length n, a (2**n, n) float64 array; row i is i written in binary."""
    if not 0 < n <= 24:
        raise ValueError(f"all_states({n}): enumerate between 1 and 24 units")
    return ((np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(np.float64)


def total_variation(p, q):
    """TV(p, q) = 1/2 sum |p - q|, for two distributions over the same finite set."""
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def sample_bernoulli(p, rng):
    """One 0/1 draw of independent Bernoulli units with probabilities p (u < p with u ~ U[0, 1)), in p's dtype."""
    p = np.asarray(p)
    return (rng.random(p.shape) < p).astype(p.dtype)


def bm_energy(S, W, b):
    """E(s) = -1/2 s^T W s - b^T s for each row s of S (N, K); W (K, K) symmetric with a zero diagonal."""
    S = np.atleast_2d(S)
    return -0.5 * np.einsum("ni,ij,nj->n", S, W, S) - S @ b


def bm_exact_distribution(W, b, T=1.0):
    """All 2**K states (2**K, K) and their Boltzmann probabilities exp(-E / T) / Z, by enumeration."""
    T = check_temperature(T)
    states = all_states(len(b))
    logits = -bm_energy(states, W, b) / T
    return states, np.exp(logits - logsumexp(logits))


def bm_gibbs_sweep(S, W, b, rng, T=1.0):
    """One Gibbs sweep, in place, of every chain (row) of S: unit i <- Bernoulli(sigmoid((W s + b)_i / T)), i = 1..K."""
    T = check_temperature(T)
    for i in range(S.shape[1]):
        S[:, i] = rng.random(len(S)) < sigmoid((S @ W[:, i] + b[i]) / T)
    return S


def bm_sweep_distribution(p, W, b, T=1.0):
    """The exact distribution after one Gibbs sweep, for a distribution p over all_states(K) (no sampling)."""
    K = len(b)
    states = all_states(K)
    q = np.array(p, dtype=np.float64).reshape((2,) * K)
    for i in range(K):
        on = sigmoid((states @ W[:, i] + b[i]) / T).reshape((2,) * K)   # p(s_i = 1 | the others)
        marginal = q.sum(axis=i, keepdims=True)                       # forget s_i ...
        q = np.concatenate([1 - np.take(on, [0], axis=i), np.take(on, [0], axis=i)], axis=i) * marginal  # ... redraw it
    return q.ravel()


def simulated_annealing(W, b, rng, temperatures, n_chains=1):
    """Gibbs sweeps at a falling temperature (模拟退火). Returns the final states (n_chains, K) and the
    energies after every sweep (len(temperatures), n_chains)."""
    S = (rng.random((n_chains, len(b))) < 0.5).astype(np.float64)
    energies = []
    for T in temperatures:
        bm_gibbs_sweep(S, W, b, rng, T)
        energies.append(bm_energy(S, W, b))
    return S, np.array(energies)


def free_energy_forward(v, W, b, c):
    """Free energy of each row of v (N, D): F(v) = -v b - sum_j softplus(c_j + v W_:j). Returns F (N,) and the cache."""
    v = np.atleast_2d(v)
    if v.shape[1] != W.shape[0] or b.shape != (W.shape[0],) or c.shape != (W.shape[1],):
        raise ValueError(f"free_energy_forward: v {v.shape}, W {W.shape}, b {b.shape}, c {c.shape}; "
                         f"expected v (N, D), W (D, H), b (D,), c (H,)")
    a = v @ W + c                              # hidden pre-activations (N, H)
    return -(v @ b) - softplus(a).sum(axis=1), (v, W, b, a)


def free_energy_backward(dF, cache):
    """dF (N,) -> dv (N, D), dW (D, H), db (D,), dc (H,), using dF/da = -sigmoid(a) = -h_hat."""
    v, W, b, a = cache
    dh = -dF[:, None] * sigmoid(a)             # gradient with respect to the pre-activations a
    return -dF[:, None] * b + dh @ W.T, v.T @ dh, -(dF @ v), dh.sum(axis=0)


def rbm_hidden_probs(v, W, c, T=1.0):
    """p(h_j = 1 | v) = sigmoid((c_j + v W_:j) / T), (N, H)."""
    return sigmoid((v @ W + c) / T)


def rbm_visible_probs(h, W, b, T=1.0):
    """p(v_i = 1 | h) = sigmoid((b_i + W_i: h) / T), (N, D)."""
    return sigmoid((h @ W.T + b) / T)


def rbm_log_partition(W, b, c):
    """log Z of an RBM, exactly, by summing exp(-F) over every state of the smaller layer (at most 24 units)."""
    D, H = W.shape
    if D <= H:
        return logsumexp(-free_energy_forward(all_states(D), W, b, c)[0])
    return logsumexp(-free_energy_forward(all_states(H), W.T, c, b)[0])   # the same RBM seen from its hidden side


def rbm_exact_nll_gradient(V, W, b, c):
    """The exact gradient of the mean negative log-likelihood -1/N sum_n log p(v_n): the data's mean dF minus
    its expectation under p(v) (enumerating all 2**D visible states). A dict keyed W, b, c."""
    states = all_states(W.shape[0])
    F_all, cache_all = free_energy_forward(states, W, b, c)
    p = np.exp(-F_all - logsumexp(-F_all))
    _, dW_pos, db_pos, dc_pos = free_energy_backward(np.full(len(V), 1.0 / len(V)), free_energy_forward(V, W, b, c)[1])
    _, dW_neg, db_neg, dc_neg = free_energy_backward(p, cache_all)
    return {"W": dW_pos - dW_neg, "b": db_pos - db_neg, "c": dc_pos - dc_neg}


class RBM:
    """Bernoulli-Bernoulli RBM trained by CD-k (persistent=False) or persistent CD (persistent=True).

    params  W (D, H) ~ N(0, weight_std^2), b (D,) visible biases (default 0), c (H,) hidden biases = 0.
    loss(V, rng) returns the CD surrogate mean F(V) - mean F(V_neg), whose gradient (with V_neg held fixed)
    is the CD-k estimate of the negative log-likelihood's gradient, and that gradient: (loss, grads).
    """

    def __init__(self, n_visible, n_hidden, *, k=1, persistent=False, weight_std=0.01, visible_bias=None,
                 seed=0, dtype=np.float32):
        self.k, self.persistent, self.dtype = check_steps(k), bool(persistent), np.dtype(dtype)
        W = np.random.default_rng(seed).normal(0.0, weight_std, (n_visible, n_hidden))
        b = np.zeros(n_visible) if visible_bias is None else np.asarray(visible_bias, dtype=np.float64)
        self.params = {"W": W.astype(dtype), "b": b.astype(dtype), "c": np.zeros(n_hidden, dtype=dtype)}
        self.chain = None                      # the persistent chains' visible states (PCD only)

    def hidden_probs(self, v, T=1.0):
        return rbm_hidden_probs(v, self.params["W"], self.params["c"], check_temperature(T))

    def visible_probs(self, h, T=1.0):
        return rbm_visible_probs(h, self.params["W"], self.params["b"], check_temperature(T))

    def free_energy(self, v):
        return free_energy_forward(v, self.params["W"], self.params["b"], self.params["c"])[0]

    def gibbs(self, v, k, rng, T=1.0):
        """k block-Gibbs steps v -> h ~ p(h | v) -> v ~ p(v | h) from the binary rows of v; returns the last v."""
        v = check_binary(v).astype(self.dtype)
        for _ in range(check_steps(k)):
            h = sample_bernoulli(self.hidden_probs(v, T), rng)
            v = sample_bernoulli(self.visible_probs(h, T), rng)
        return v

    def negative_samples(self, V, rng):
        """CD-k: k steps from the data V. PCD: k steps from the persistent chains (started at the first batch)."""
        if not self.persistent:
            return self.gibbs(V, self.k, rng)
        if self.chain is None or len(self.chain) != len(V):
            self.chain = np.array(V, dtype=self.dtype)
        self.chain = self.gibbs(self.chain, self.k, rng)
        return self.chain

    def loss(self, V, rng):
        V = check_binary(V, "V").astype(self.dtype)
        V_neg = self.negative_samples(V, rng)
        n, (W, b, c) = len(V), (self.params[name] for name in "Wbc")
        F_pos, cache_pos = free_energy_forward(V, W, b, c)
        F_neg, cache_neg = free_energy_forward(V_neg, W, b, c)
        _, dW_pos, db_pos, dc_pos = free_energy_backward(np.full(n, 1.0 / n, self.dtype), cache_pos)
        _, dW_neg, db_neg, dc_neg = free_energy_backward(np.full(n, 1.0 / n, self.dtype), cache_neg)
        grads = {"W": dW_pos - dW_neg, "b": db_pos - db_neg, "c": dc_pos - dc_neg}
        return float(F_pos.mean() - F_neg.mean()), grads

    def reconstruct(self, V):
        """Mean-field reconstruction p(v | h_hat) with h_hat = p(h | V): what the hidden layer keeps of V."""
        return self.visible_probs(self.hidden_probs(V))


def fit_rbm(rbm, X, *, epochs, batch_size, optimizer, rng, on_epoch=None):
    """Train `rbm` on the binary rows of X with `optimizer` (chapter 7a's, stepping rbm.params with rbm.loss's
    gradients). `rng` draws the mini-batch order and every Gibbs sample. Returns the mean squared
    reconstruction error of each epoch (a rough progress signal, not the likelihood)."""
    X = check_binary(X, "X").astype(rbm.dtype)
    history = []
    for epoch in range(epochs):
        order, errors = rng.permutation(len(X)), []
        for start in range(0, len(X), batch_size):
            V = X[order[start:start + batch_size]]
            _, grads = rbm.loss(V, rng)
            optimizer.step(rbm.params, grads)
            errors.append(float(np.mean((V - rbm.reconstruct(V)) ** 2)))
        history.append(float(np.mean(errors)))
        if on_epoch is not None:
            on_epoch(epoch, rbm)
    return history


def rbm_pseudo_log_likelihood(rbm, V, rng):
    """scikit-learn's estimate, per row: D * log sigmoid(F(v~) - F(v)), v~ = v with one random pixel flipped."""
    V = check_binary(V, "V").astype(rbm.dtype)
    flipped = V.copy()
    rows, cols = np.arange(len(V)), rng.integers(0, V.shape[1], len(V))
    flipped[rows, cols] = 1 - flipped[rows, cols]
    return V.shape[1] * np.log(sigmoid(rbm.free_energy(flipped) - rbm.free_energy(V)))


def ais_betas(n):
    """n inverse temperatures from 0 to 1, denser near 1 where p_beta changes fastest (10% / 30% / 60%)."""
    n1, n2 = n // 10, 3 * n // 10
    return np.concatenate([np.linspace(0, 0.5, n1, endpoint=False), np.linspace(0.5, 0.9, n2, endpoint=False),
                           np.linspace(0.9, 1.0, n - n1 - n2)])


def ais_log_partition(W, b, c, *, betas, n_runs, rng, base_b=None):
    """AIS estimate of an RBM's log Z from the base model of independent pixels with biases base_b (default 0).

    Returns log Z_hat = log Z_0 + log mean(w) and the log-weights log w (n_runs,) of the runs.
    """
    W, b, c = (np.asarray(a, dtype=np.float64) for a in (W, b, c))
    base_b = np.zeros(W.shape[0]) if base_b is None else np.asarray(base_b, dtype=np.float64)
    betas = np.asarray(betas, dtype=np.float64)
    if betas[0] != 0 or betas[-1] != 1 or np.any(np.diff(betas) <= 0):
        raise ValueError("betas must rise strictly from 0 to 1")
    log_z0 = softplus(base_b).sum() + W.shape[1] * np.log(2.0)
    v = sample_bernoulli(np.tile(sigmoid(base_b), (n_runs, 1)), rng)
    log_w = np.zeros(n_runs)
    for beta_prev, beta in zip(betas[:-1], betas[1:]):
        a = v @ W + c
        log_w += (beta - beta_prev) * (v @ (b - base_b)) + softplus(beta * a).sum(1) - softplus(beta_prev * a).sum(1)
        h = sample_bernoulli(sigmoid(beta * a), rng)
        v = sample_bernoulli(sigmoid((1 - beta) * base_b + beta * (h @ W.T + b)), rng)
    return log_z0 + logsumexp(log_w) - np.log(n_runs), log_w


from nndl_helpers.chapters.ch04a import MLP
from nndl_helpers.chapters.ch07a import SGD


def pretrain_dbn(X, hidden_sizes, *, epochs, batch_size, lr, rng, k=1, momentum=0.5, seed=0):
    """Greedy layer-wise pre-training of a DBN (NNDL algorithm 12.2): a list of trained RBMs, bottom first.

    Layer l is an RBM trained with CD-k on binary samples of layer l-1's hidden units (the data for l = 1).
    """
    V, rbms = check_binary(X, "X").astype(np.float32), []
    for l, n_hidden in enumerate(hidden_sizes):
        layer = RBM(V.shape[1], n_hidden, k=k, seed=seed + l)
        fit_rbm(layer, V, epochs=epochs, batch_size=batch_size, optimizer=SGD(lr=lr, momentum=momentum), rng=rng)
        rbms.append(layer)
        V = sample_bernoulli(layer.hidden_probs(V), rng)      # the next layer's training data
    return rbms


def dbn_classifier(rbms, n_classes, *, seed=0):
    """A sigmoid MLP (chapter 4a) whose hidden layers start from the RBMs' W and hidden biases c; the softmax
    layer on top starts from Xavier's initialisation. rbms=[] sizes nothing: use MLP directly for a random start."""
    sizes = [rbms[0].params["W"].shape[0]] + [r.params["W"].shape[1] for r in rbms] + [n_classes]
    model = MLP(sizes, "sigmoid", output="softmax", weight_init="xavier", seed=seed, dtype=np.float32)
    for l, layer in enumerate(rbms, start=1):
        model.params[f"W{l}"][:] = layer.params["W"]
        model.params[f"b{l}"][:] = layer.params["c"]
    return model
