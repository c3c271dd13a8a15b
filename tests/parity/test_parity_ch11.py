"""Notebooks 11a and 11b's NumPy code (nndl_helpers.chapters.ch11a / ch11b) against torch.autograd and brute force.

Every hand-written gradient of the CRF (crf_backward, LinearChainCRF.loss) is compared with autograd on
random scores, padded batches and several tag counts; log Z with enumeration of all tag sequences.
The inference routines (variable elimination, belief propagation, the HMM's forward, backward and
Viterbi) are compared with brute-force enumeration on random models, and the marginals they return with
the gradients of log Z (log p(x)) with respect to log-potentials (log-emissions), computed by autograd.
The PyTorch CRF layer must equal the NumPy one. Bad input must fail with a ValueError, never a NaN.
"""
import itertools

import numpy as np
import pytest
import torch

import nndl_helpers as nh
from nndl_helpers.chapters import ch11a, ch11b, ch11b_torch

TOL = 1e-6


# ----------------------------------------------------------------------------------- CRF (notebook 11b)

def torch_log_Z(emissions, trans, start, end, mask):
    alpha = start + emissions[:, 0]
    for t in range(1, emissions.shape[1]):
        step = torch.logsumexp(alpha[:, :, None] + trans, dim=1) + emissions[:, t]
        alpha = torch.where(mask[:, t, None], step, alpha)
    return torch.logsumexp(alpha + end, dim=1)


def random_crf(rng, N, T, K):
    lengths = rng.integers(1, T + 1, size=N)
    lengths[0] = T
    return {"emissions": rng.normal(size=(N, T, K)) * 2, "trans": rng.normal(size=(K, K)),
            "start": rng.normal(size=K), "end": rng.normal(size=K), "mask": np.arange(T)[None] < lengths[:, None]}


@pytest.mark.parametrize("N, T, K", [(1, 1, 2), (3, 5, 4), (4, 7, 3), (2, 6, 5)])
def test_crf_backward_matches_autograd(N, T, K):
    rng = np.random.default_rng([N, T, K])
    inputs = random_crf(rng, N, T, K)
    dlog_Z = rng.normal(size=N)
    _, cache = ch11b.crf_forward(**inputs)
    grads = dict(zip(["emissions", "trans", "start", "end"], ch11b.crf_backward(dlog_Z, cache)))
    assert nh.compare_with_autograd(grads, torch_log_Z, inputs, dout=dlog_Z, verbose=False) < TOL


@pytest.mark.parametrize("K, lengths", [(2, [1, 4, 6]), (4, [5, 3, 1]), (3, [2, 2])])
def test_crf_log_partition_equals_enumeration(K, lengths):
    rng = np.random.default_rng([K, *lengths])
    T = max(lengths)
    inputs = random_crf(rng, len(lengths), T, K)
    inputs["mask"] = np.arange(T)[None] < np.array(lengths)[:, None]
    log_Z, _ = ch11b.crf_forward(**inputs)
    for n, length in enumerate(lengths):
        paths = np.array(list(itertools.product(range(K), repeat=length)))
        tags = np.zeros((len(paths), T), dtype=np.int64)
        tags[:, :length] = paths
        rep = lambda a: np.repeat(a[n:n + 1], len(paths), axis=0)   # noqa: E731
        scores = ch11b.crf_path_score(rep(inputs["emissions"]), tags, inputs["trans"], inputs["start"],
                                      inputs["end"], rep(inputs["mask"]))
        assert abs(log_Z[n] - np.logaddexp.reduce(scores)) < 1e-10
        best, score = ch11b.viterbi(inputs["start"], inputs["trans"], inputs["emissions"][n, :length], inputs["end"])
        assert np.array_equal(best, paths[scores.argmax()]) and abs(score - scores.max()) < 1e-10


def torch_crf_loss(model, X, tags, mask):
    X, tags, mask = torch.as_tensor(X), torch.as_tensor(tags), torch.as_tensor(mask)

    def loss(W_prev, W_cur, W_next, b, trans, start, end):
        Xm = torch.where(mask, X, 0)
        prev, nxt = torch.nn.functional.pad(Xm, (1, 0))[:, :-1], torch.nn.functional.pad(Xm, (0, 1))[:, 1:]
        em = W_prev[prev] + W_cur[Xm] + W_next[nxt] + b
        n = torch.arange(len(X))
        gold = (em.gather(2, tags[..., None])[..., 0] * mask).sum(1) + (trans[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(1)
        gold = gold + start[tags[:, 0]] + end[tags[n, mask.sum(1) - 1]]
        reg = 0.5 * model.l2 * sum((W ** 2).sum() for W in (W_prev, W_cur, W_next))
        return (torch_log_Z(em, trans, start, end, mask) - gold).mean() + reg
    return loss


@pytest.mark.parametrize("V, K, l2", [(5, 4, 0.0), (7, 3, 0.1), (3, 2, 1e-3)])
def test_linear_chain_crf_loss_matches_autograd(V, K, l2):
    rng = np.random.default_rng([V, K])
    model = ch11b.LinearChainCRF(V, n_tags=K, l2=l2)
    for p in model.params.values():
        p[...] = rng.normal(size=p.shape)
    X = rng.integers(1, V, size=(4, 6))
    mask = np.arange(6)[None] < np.array([6, 1, 3, 5])[:, None]
    tags = np.where(mask, rng.integers(0, K, size=(4, 6)), 0)
    loss, grads = model.loss(X, tags, mask)
    ref = torch_crf_loss(model, X, tags, mask)(**{k: torch.as_tensor(v) for k, v in model.params.items()})
    assert abs(loss - ref.item()) < 1e-10
    assert nh.compare_with_autograd(grads, torch_crf_loss(model, X, tags, mask), model.params, verbose=False) < TOL
    assert set(grads) == set(model.params)
    decoded = model(X, mask)
    assert [len(d) for d in decoded] == [6, 1, 3, 5]


def test_torch_crf_layer_equals_numpy():
    rng = np.random.default_rng(3)
    inputs = random_crf(rng, 3, 5, 4)
    tags = np.where(inputs["mask"], rng.integers(0, 4, size=(3, 5)), 0)
    layer = ch11b_torch.CRF(4).double()
    with torch.no_grad():
        for name in ("trans", "start", "end"):
            getattr(layer, name).copy_(torch.as_tensor(inputs[name]))
    em = torch.tensor(inputs["emissions"], requires_grad=True)
    loss = layer.nll(em, torch.as_tensor(tags), torch.as_tensor(inputs["mask"]))
    loss.backward()
    log_Z, cache = ch11b.crf_forward(**inputs)
    gold = ch11b.crf_path_score(inputs["emissions"], tags, inputs["trans"], inputs["start"], inputs["end"], inputs["mask"])
    assert abs(loss.item() - np.mean(log_Z - gold)) < 1e-10
    dem, dtrans, _, _ = ch11b.crf_backward(np.full(3, 1 / 3), cache)
    onehot = np.eye(4)[tags] * inputs["mask"][..., None] / 3
    assert nh.rel_error(em.grad.numpy(), dem - onehot) < 1e-9
    decoded = layer.decode(em, torch.as_tensor(inputs["mask"]))
    assert [len(d) for d in decoded] == list(inputs["mask"].sum(1))


def test_bilstm_crf_shapes_and_gradient_flow():
    torch.manual_seed(0)
    model = ch11b_torch.BiLSTMCRF(10, embed=4, hidden=5)
    X = torch.tensor([[3, 4, 5, 0], [1, 2, 0, 0]])
    mask = X > 0
    loss = model.nll(X, torch.zeros_like(X), mask)
    loss.backward()
    assert torch.isfinite(loss) and model.embed.weight.grad is not None
    assert [len(p) for p in model.decode(X, mask)] == [3, 2]


def test_crf_rejects_bad_masks():
    inputs = random_crf(np.random.default_rng(0), 2, 3, 2)
    inputs["mask"] = np.array([[True, False, True], [True, True, True]])
    with pytest.raises(ValueError, match="left-aligned"):
        ch11b.crf_forward(**inputs)
    inputs["mask"] = np.array([[False, False, False], [True, True, True]])
    with pytest.raises(ValueError, match="non-empty"):
        ch11b.crf_forward(**inputs)


# ----------------------------------------------------------------------------------- HMM (notebook 11b)

def random_hmm(rng, K, V, zeros=True):
    start, trans, emit = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K), rng.dirichlet(np.ones(V), size=K)
    if zeros and K > 2:
        trans[0, 1] = 0
        trans[0] /= trans[0].sum()
    return start, trans, emit


def brute_force(start, trans, emit, obs):
    K, T = len(start), len(obs)
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    p = start[paths[:, 0]] * np.prod(trans[paths[:, :-1], paths[:, 1:]], axis=1) * np.prod(emit[paths, obs], axis=1)
    gamma = np.stack([np.bincount(paths[:, t], weights=p, minlength=K) for t in range(T)]) / p.sum()
    return np.log(p.sum()), gamma, paths[p.argmax()]


@pytest.mark.parametrize("K, V, T", [(2, 3, 1), (2, 6, 8), (3, 4, 6), (4, 2, 5)])
def test_hmm_inference_equals_enumeration(K, V, T):
    rng = np.random.default_rng([K, V, T])
    model = random_hmm(rng, K, V)
    obs = rng.integers(0, V, size=T)
    log_lik, gamma, xi = ch11b.hmm_posteriors(*model, obs)
    bf_log_lik, bf_gamma, bf_path = brute_force(*model, obs)
    assert abs(log_lik - bf_log_lik) < 1e-12 and np.max(np.abs(gamma - bf_gamma)) < 1e-12
    assert abs(xi.sum() - (T - 1)) < 1e-10
    path, score = ch11b.viterbi(*(ch11b.safe_log(a) for a in model[:2]), ch11b.safe_log(model[2][:, obs].T))
    assert np.array_equal(path, bf_path)
    batch = np.stack([obs, obs[::-1]])                     # a batch gives each sequence's own result
    log_lik_batch, gamma_batch, _ = ch11b.hmm_posteriors(*model, batch)
    assert abs(log_lik_batch - log_lik - ch11b.hmm_posteriors(*model, obs[::-1])[0]) < 1e-10
    assert np.max(np.abs(gamma_batch[0] - gamma)) < 1e-12


def test_hmm_posteriors_are_the_gradient_of_log_likelihood():
    """d log p(x) / d log p(x_t | y_t = k) = p(y_t = k | x): autograd through a log-space forward in torch."""
    rng = np.random.default_rng(5)
    start, trans, emit = random_hmm(rng, 3, 4)
    obs = rng.integers(0, 4, size=9)

    def torch_log_lik(log_e):
        alpha = torch.log(torch.as_tensor(start)) + log_e[0]
        for t in range(1, len(obs)):
            alpha = torch.logsumexp(alpha[:, None] + torch.log(torch.as_tensor(trans)), dim=0) + log_e[t]
        return torch.logsumexp(alpha, dim=0)
    _, gamma, _ = ch11b.hmm_posteriors(start, trans, emit, obs)
    assert nh.compare_with_autograd({"log_e": gamma}, torch_log_lik, {"log_e": np.log(emit[:, obs].T)}, verbose=False) < 1e-9


def test_hmm_is_stable_and_fails_clearly():
    rng = np.random.default_rng(6)
    model = random_hmm(rng, 3, 5)
    _, obs = ch11b.hmm_sample(*model, 20_000, rng)
    log_lik, gamma, _ = ch11b.hmm_posteriors(*model, obs)
    assert np.isfinite(log_lik) and np.all(np.isfinite(gamma)) and np.allclose(gamma.sum(1), 1)
    emit = np.array([[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="probability 0"):
        ch11b.hmm_forward(np.array([0.5, 0.5]), np.eye(2), emit, np.array([0, 1]))
    with pytest.raises(ValueError, match="sum to 1"):
        ch11b.hmm_forward(np.array([0.5, 0.6]), np.eye(2), emit, np.array([0]))
    with pytest.raises(ValueError, match="symbols"):
        ch11b.hmm_forward(np.array([0.5, 0.5]), np.eye(2), emit, np.array([2]))
    with pytest.raises(ValueError, match="-inf"):
        ch11b.viterbi(np.array([0.0, -np.inf]), np.array([[-np.inf, 0.0], [0.0, 0.0]]), np.zeros((2, 2)),
                      log_end=np.array([0.0, -np.inf]))


def test_baum_welch_never_lowers_the_likelihood():
    rng = np.random.default_rng(7)
    truth = random_hmm(rng, 2, 4, zeros=False)
    data = [ch11b.hmm_sample(*truth, 200, rng)[1] for _ in range(3)]
    *_, history = ch11b.baum_welch(data, *random_hmm(rng, 2, 4, zeros=False), n_iter=30, tol=0)
    assert np.all(np.diff(history) > -1e-9)


def test_segmentation_helpers_round_trip():
    words = ["我们", "喜欢", "猫", "图书馆员"]
    tags = ch11b.words_to_tags(words)
    assert "".join(ch11b.TAGS[t] for t in tags) == "BEBESBMME"
    assert ch11b.tags_to_words("".join(words), tags) == words
    assert ch11b.segmentation_f1([words], [words]) == (1.0, 1.0, 1.0)
    p, r, f1 = ch11b.segmentation_f1([["我们喜欢", "猫"]], [["我们", "喜欢", "猫"]])
    assert (p, r) == (0.5, 1 / 3) and abs(f1 - 0.4) < 1e-12


def test_gmm_em_climbs():
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(size=(50, 2)) - 2, rng.normal(size=(50, 2)) + 2])
    *_, log_liks, elbos = ch11b.gmm_em(X, np.ones(2) / 2, X[[0, 99]], np.stack([np.eye(2)] * 2), n_iter=30, tol=0)
    assert np.all(np.diff(log_liks) > -1e-9) and np.all(np.array(elbos[:-1]) <= np.array(log_liks[1:]) + 1e-9)


# ------------------------------------------------------------------ graphical models (notebook 11a)

def random_network(rng, n=6, max_parents=2):
    cpts = {}
    for i in range(n):
        parents = tuple(f"v{j}" for j in sorted(rng.choice(i, size=min(i, int(rng.integers(0, max_parents + 1))),
                                                           replace=False)))
        card = int(rng.integers(2, 4))
        shape = tuple(cpts[p][1].shape[-1] for p in parents)
        cpts[f"v{i}"] = (parents, rng.dirichlet(np.ones(card), size=shape))
    return ch11a.BayesianNetwork(cpts)


@pytest.mark.parametrize("seed", range(4))
def test_variable_elimination_equals_enumeration(seed):
    rng = np.random.default_rng(seed)
    bn = random_network(rng)
    evidence = {bn.order[-1]: 1}
    for v in bn.order[:-1]:
        exact = ch11a.enumerate_posterior(bn, [v], evidence).table
        ve, _ = ch11a.variable_elimination(bn.factors(), [v], evidence)
        assert np.max(np.abs(ve.table - exact)) < 1e-12
        order = [u for u in bn.order[:-1] if u != v]
        ve_order, _ = ch11a.variable_elimination(bn.factors(), [v], evidence, order=order)
        assert np.max(np.abs(ve_order.table - exact)) < 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_belief_propagation_marginals_are_gradients_of_log_Z(seed):
    """On a random tree: BP equals enumeration, and BP's marginals are d log Z / d log phi_v (autograd)."""
    rng = np.random.default_rng(seed)
    card = {f"x{i}": int(rng.integers(2, 4)) for i in range(6)}
    unary = {v: rng.uniform(0.2, 2, size=k) for v, k in card.items()}
    pairs = [(f"x{int(rng.integers(i))}", f"x{i}") for i in range(1, 6)]
    pair_tables = [rng.uniform(0.2, 2, size=(card[a], card[b])) for a, b in pairs]
    factors = [ch11a.Factor([v], t) for v, t in unary.items()] + [ch11a.Factor(p, t) for p, t in zip(pairs, pair_tables)]
    marginals, Z, n_messages = ch11a.belief_propagation(factors)
    joint = ch11a.product(factors)
    assert abs(Z - joint.table.sum()) < 1e-12 * Z and n_messages == 2 * (6 + 2 * 5)
    order = list(card)

    def torch_log_Z(**log_unary):
        total = torch.zeros([card[v] for v in order], dtype=torch.float64)
        for v in order:
            total = total + log_unary[v].reshape([card[u] if u == v else 1 for u in order])
        for (a, b), t in zip(pairs, pair_tables):
            shape = [card[u] if u in (a, b) else 1 for u in order]
            table = torch.as_tensor(t if order.index(a) < order.index(b) else t.T)
            total = total + torch.log(table).reshape(shape)
        return torch.logsumexp(total.reshape(-1), dim=0)
    assert nh.compare_with_autograd(marginals, torch_log_Z, {v: np.log(t) for v, t in unary.items()}, verbose=False) < 1e-10


def test_belief_propagation_refuses_cycles_and_uses_evidence():
    f = [ch11a.Factor(["a", "b"], np.ones((2, 2))), ch11a.Factor(["b", "c"], np.ones((2, 2))),
         ch11a.Factor(["c", "a"], np.ones((2, 2)))]
    with pytest.raises(ValueError, match="cycle"):
        ch11a.belief_propagation(f)
    bn = random_network(np.random.default_rng(9), n=4, max_parents=1)
    marginals, p_e, _ = ch11a.belief_propagation(bn.factors(), {"v3": 0})
    assert abs(p_e - bn.joint().reduce({"v3": 0}).table.sum()) < 1e-12


def test_d_separation_matches_the_joint_on_a_random_network():
    bn = random_network(np.random.default_rng(10), n=5)
    joint = bn.joint()
    for x, y in itertools.combinations(bn.order, 2):
        rest = [v for v in bn.order if v not in (x, y)]
        for r in range(len(rest) + 1):
            for given in itertools.combinations(rest, r):
                if ch11a.d_separated(bn.parents, x, y, given):   # d-separation implies independence
                    assert ch11a.conditionally_independent(joint, x, y, given, tol=1e-10)


def test_samplers_converge():
    bn = random_network(np.random.default_rng(11), n=4)
    evidence = {bn.order[-1]: 0}
    rng = np.random.default_rng(12)
    target = bn.order[0]
    exact = ch11a.enumerate_posterior(bn, [target], evidence).table
    x, w = ch11a.likelihood_weighting(bn, evidence, 200_000, rng)
    assert np.max(np.abs(ch11a.weighted_estimate(x[target], w, len(exact))[-1] - exact)) < 0.01
    x, w = ch11a.rejection_sample(bn, evidence, 200_000, rng)
    assert np.max(np.abs(ch11a.weighted_estimate(x[target], w, len(exact))[-1] - exact)) < 0.01
    trace = ch11a.gibbs_sample(bn, evidence, 500, rng, n_chains=200, burn_in=50)
    assert np.max(np.abs(np.bincount(trace[target].ravel(), minlength=len(exact)) / trace[target].size - exact)) < 0.02
    trace, rate = ch11a.metropolis_hastings(bn, evidence, 1500, rng, n_chains=200, burn_in=150)
    assert 0 < rate < 1
    assert np.max(np.abs(np.bincount(trace[target].ravel(), minlength=len(exact)) / trace[target].size - exact)) < 0.02


def test_bad_networks_and_factors_fail_clearly():
    with pytest.raises(ValueError, match="cycle"):
        ch11a.BayesianNetwork({"a": (("b",), [[0.5, 0.5], [0.5, 0.5]]), "b": (("a",), [[0.5, 0.5], [0.5, 0.5]])})
    with pytest.raises(ValueError, match="sum to 1"):
        ch11a.BayesianNetwork({"a": ((), [0.5, 0.6])})
    with pytest.raises(ValueError, match="shape"):
        ch11a.BayesianNetwork({"a": ((), [0.5, 0.5]), "b": (("a",), [0.5, 0.5])})
    with pytest.raises(ValueError, match="one axis per"):
        ch11a.Factor(["a", "b"], np.ones(3))
    with pytest.raises(ValueError, match="impossible"):
        ch11a.Factor(["a"], np.zeros(2)).normalize()
    with pytest.raises(ValueError, match="conditioning set"):
        ch11a.d_separated({"a": (), "b": ("a",)}, "a", "b", ["a"])


def test_mean_field_is_a_bound_and_exact_without_coupling():
    rng = np.random.default_rng(13)
    unary = {f"x{i}": rng.uniform(0.2, 2, size=3) for i in range(4)}
    pairwise = [(("x0", "x1"), rng.uniform(0.2, 2, size=(3, 3))), (("x1", "x2"), rng.uniform(0.2, 2, size=(3, 3))),
                (("x2", "x3"), rng.uniform(0.2, 2, size=(3, 3))), (("x3", "x0"), rng.uniform(0.2, 2, size=(3, 3)))]
    factors = [ch11a.Factor([v], t) for v, t in unary.items()] + [ch11a.Factor(p, t) for p, t in pairwise]
    log_Z = np.log(ch11a.product(factors).table.sum())     # a cycle: mean field does not need a tree
    q, elbos = ch11a.mean_field(unary, pairwise, n_sweeps=40)
    assert np.all(np.diff(elbos) >= -1e-12) and elbos[-1] <= log_Z + 1e-12
    assert all(abs(p.sum() - 1) < 1e-12 for p in q.values())
    q0, elbos0 = ch11a.mean_field(unary, [], n_sweeps=2)   # independent variables: q is exact, ELBO = log Z
    assert abs(elbos0[-1] - sum(np.log(t.sum()) for t in unary.values())) < 1e-12
    assert all(np.max(np.abs(q0[v] - t / t.sum())) < 1e-12 for v, t in unary.items())
