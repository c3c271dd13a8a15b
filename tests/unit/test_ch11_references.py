"""Chapter 11's from-scratch inference and learning against reference libraries (test-only dependencies).

pgmpy: variable elimination, belief propagation, d-separation and moralisation on the alarm network of
notebook 11a. hmmlearn: the HMM's log-likelihood, posteriors, Viterbi path and Baum-Welch updates of
notebook 11b. scikit-learn: EM for a Gaussian mixture from the same start.
"""
import itertools
import warnings

import numpy as np
import pytest

from nndl_helpers.chapters import ch11a, ch11b

ALARM = {
    "B": ((), [0.999, 0.001]),
    "E": ((), [0.998, 0.002]),
    "A": (("B", "E"), [[[0.999, 0.001], [0.71, 0.29]], [[0.06, 0.94], [0.05, 0.95]]]),
    "J": (("A",), [[0.95, 0.05], [0.10, 0.90]]),
    "M": (("A",), [[0.99, 0.01], [0.30, 0.70]]),
}


def pgmpy_network(cpts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.factors.discrete import TabularCPD
        from pgmpy.models import DiscreteBayesianNetwork
    model = DiscreteBayesianNetwork([(p, v) for v, (pa, _) in cpts.items() for p in pa])
    for v, (pa, table) in cpts.items():
        table = np.asarray(table)
        values = table.reshape(-1, table.shape[-1]).T        # pgmpy: rows = the variable, columns = parent configs
        model.add_cpds(TabularCPD(v, table.shape[-1], values, evidence=list(pa) or None,
                                  evidence_card=list(table.shape[:-1]) or None))
    assert model.check_model()
    return model


@pytest.fixture(scope="module")
def alarm():
    return ch11a.BayesianNetwork(ALARM), pgmpy_network(ALARM)


@pytest.mark.parametrize("evidence", [{}, {"J": 1, "M": 1}, {"J": 1, "M": 1, "E": 1}, {"A": 0}])
def test_posteriors_match_pgmpy(alarm, evidence):
    from pgmpy.inference import BeliefPropagation, VariableElimination
    bn, model = alarm
    ve, bp = VariableElimination(model), BeliefPropagation(model)
    marginals, _, _ = ch11a.belief_propagation(bn.factors(), evidence)
    for v in bn.order:
        if v in evidence:
            continue
        ours, _ = ch11a.variable_elimination(bn.factors(), [v], evidence)
        ref = ve.query([v], evidence=evidence, show_progress=False).values
        assert np.max(np.abs(ours.table - ref)) < 1e-12
        assert np.max(np.abs(marginals[v] - bp.query([v], evidence=evidence, show_progress=False).values)) < 1e-12


def test_joint_query_matches_pgmpy(alarm):
    from pgmpy.inference import VariableElimination
    bn, model = alarm
    ours, _ = ch11a.variable_elimination(bn.factors(), ["B", "E"], {"J": 1, "M": 1})
    ref = VariableElimination(model).query(["B", "E"], evidence={"J": 1, "M": 1}, joint=True, show_progress=False)
    assert np.max(np.abs(ours.table - ref.values.transpose([ref.variables.index(v) for v in ["B", "E"]]))) < 1e-12


def test_d_separation_matches_pgmpy(alarm):
    bn, model = alarm
    for x, y in itertools.combinations(bn.order, 2):
        rest = [v for v in bn.order if v not in (x, y)]
        for r in range(len(rest) + 1):
            for given in itertools.combinations(rest, r):
                assert ch11a.d_separated(bn.parents, x, y, given) == (not model.is_dconnected(x, y, observed=list(given)))


def test_moral_graph_matches_pgmpy(alarm):
    bn, model = alarm
    ours = ch11a.moralize(bn.parents)
    assert ours == {frozenset(e) for e in model.moralize().edges()}


# ------------------------------------------------------------------------------------------- hmmlearn

def hmmlearn_model(start, trans, emit, **kw):
    from hmmlearn.hmm import CategoricalHMM
    model = CategoricalHMM(n_components=len(start), init_params="", **kw)
    model.n_features = emit.shape[1]
    model.startprob_, model.transmat_, model.emissionprob_ = start, trans, emit
    return model


@pytest.mark.parametrize("K, V, T", [(2, 6, 50), (3, 4, 2_000), (4, 5, 7)])
def test_hmm_inference_matches_hmmlearn(K, V, T):
    rng = np.random.default_rng([K, V, T])
    start, trans, emit = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K), rng.dirichlet(np.ones(V), size=K)
    _, obs = ch11b.hmm_sample(start, trans, emit, T, rng)
    model = hmmlearn_model(start, trans, emit)
    log_lik, gamma, _ = ch11b.hmm_posteriors(start, trans, emit, obs)
    assert abs(log_lik - model.score(obs[:, None])) < 1e-8 * max(1.0, abs(log_lik))
    assert np.max(np.abs(gamma - model.predict_proba(obs[:, None]))) < 1e-8
    path, score = ch11b.viterbi(np.log(start), np.log(trans), np.log(emit[:, obs].T))
    ref_score, ref_path = model.decode(obs[:, None], algorithm="viterbi")
    assert abs(score - ref_score) < 1e-8 * max(1.0, abs(score))
    # the same best path, or (long sequences) another whose score ties with it to rounding

    def path_score(p):
        return np.log(start[p[0]]) + np.log(trans[p[:-1], p[1:]]).sum() + np.log(emit[p, obs]).sum()
    assert np.array_equal(path, ref_path) or abs(path_score(ref_path) - path_score(path)) < 1e-8 * abs(score)


def test_baum_welch_matches_hmmlearn():
    rng = np.random.default_rng(1)
    K, V = 3, 5
    truth = (rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K), rng.dirichlet(np.ones(V), size=K))
    sequences = [ch11b.hmm_sample(*truth, T, rng)[1] for T in (120, 80, 200)]
    init = (rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K), rng.dirichlet(np.ones(V), size=K))
    start, trans, emit, history = ch11b.baum_welch(sequences, *init, n_iter=5, tol=0)
    model = hmmlearn_model(*(a.copy() for a in init), n_iter=5, tol=0.0, params="ste", implementation="scaling")
    model.fit(np.concatenate(sequences)[:, None], lengths=[len(s) for s in sequences])
    assert np.max(np.abs(start - model.startprob_)) < 1e-8
    assert np.max(np.abs(trans - model.transmat_)) < 1e-8
    assert np.max(np.abs(emit - model.emissionprob_)) < 1e-8
    assert np.allclose(history, model.monitor_.history, rtol=0, atol=1e-8 * abs(history[-1])) or \
        np.allclose(history[-len(model.monitor_.history):], list(model.monitor_.history), atol=1e-6)


# ------------------------------------------------------------------------------------------- scikit-learn

def test_gmm_em_matches_sklearn():
    from sklearn.mixture import GaussianMixture
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.multivariate_normal(m, np.eye(2) * s, size=100)
                        for m, s in [([-2, 0], 0.5), ([2, 1], 1.0), ([0, 3], 0.3)]])
    weights, means, covs = np.ones(3) / 3, X[[0, 150, 299]], np.stack([np.eye(2)] * 3)
    ours = ch11b.gmm_em(X, weights, means, covs, n_iter=10, tol=0, reg=1e-6)
    ref = GaussianMixture(3, covariance_type="full", max_iter=10, tol=0, reg_covar=1e-6, weights_init=weights,
                          means_init=means, precisions_init=np.stack([np.eye(2)] * 3), init_params="random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # "did not converge": we ask for exactly 10 steps
        ref.fit(X)
    assert np.max(np.abs(ours[0] - ref.weights_)) < 1e-8
    assert np.max(np.abs(ours[1] - ref.means_)) < 1e-8
    assert np.max(np.abs(ours[2] - ref.covariances_)) < 1e-8
