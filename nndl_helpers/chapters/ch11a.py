"""NumPy code taught in notebooks/11a_probabilistic_graphical_models.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import itertools

import numpy as np

class Factor:
    """A non-negative table phi(x_1, ..., x_m) over named discrete variables, one axis per variable.

    f * g     the product, over the union of the variables (axes lined up by name)
    f.sum_out("A", ...)   marginalise variables away;   f.reduce({"A": 1})  fix evidence (drop the axis)
    f.normalize()         divide by the sum;             f.aligned(order)   the table with axes in `order`
    """

    def __init__(self, variables, table):
        self.variables = tuple(variables)
        self.table = np.asarray(table, dtype=np.float64)
        if len(set(self.variables)) != len(self.variables) or self.table.ndim != len(self.variables):
            raise ValueError(f"a factor over {self.variables} needs a table with one axis per distinct "
                             f"variable, got shape {self.table.shape}")
        if not np.all(np.isfinite(self.table)) or np.any(self.table < 0):
            raise ValueError(f"factor over {self.variables}: entries must be finite and >= 0")

    def __mul__(self, other):
        variables = self.variables + tuple(v for v in other.variables if v not in self.variables)
        letter = {v: chr(ord("a") + i) for i, v in enumerate(variables)}
        spec = "{},{}->{}".format("".join(letter[v] for v in self.variables),
                                  "".join(letter[v] for v in other.variables), "".join(letter[v] for v in variables))
        return Factor(variables, np.einsum(spec, self.table, other.table))

    def sum_out(self, *names):
        unknown = [n for n in names if n not in self.variables]
        if unknown:
            raise ValueError(f"cannot sum out {unknown}: the factor is over {self.variables}")
        axes = tuple(self.variables.index(n) for n in names)
        return Factor([v for v in self.variables if v not in names], self.table.sum(axis=axes))

    def reduce(self, evidence):
        index = tuple(evidence.get(v, slice(None)) for v in self.variables)
        return Factor([v for v in self.variables if v not in evidence], self.table[index])

    def normalize(self):
        total = self.table.sum()
        if not total > 0:
            raise ValueError(f"factor over {self.variables} sums to zero: the evidence is impossible")
        return Factor(self.variables, self.table / total)

    def aligned(self, order):
        return np.transpose(self.table, [self.variables.index(v) for v in order])

def product(factors):
    """The product of a list of factors (a factor over no variables, 1, for an empty list)."""
    result = Factor((), 1.0)
    for f in factors:
        result = result * f
    return result


class BayesianNetwork:
    """A Bayesian network (贝叶斯网络): cpts maps name -> (parents tuple, table of shape (|pa_1|, ..., |x|)).

    parents, cpts, card (number of values of each variable), order (topological), children;
    factor(v) the CPT as a Factor over (parents..., v); factors() all of them; joint() their product (brute force);
    log_prob(assignment) log p(x) for dicts of equally shaped integer arrays (vectorised over samples).
    """

    def __init__(self, cpts):
        self.parents = {v: tuple(pa) for v, (pa, _) in cpts.items()}
        self.cpts = {v: np.asarray(t, dtype=np.float64) for v, (_, t) in cpts.items()}
        self.card = {v: t.shape[-1] for v, t in self.cpts.items()}
        for v, t in self.cpts.items():
            missing = [p for p in self.parents[v] if p not in self.cpts]
            if missing:
                raise ValueError(f"{v}: unknown parents {missing}")
            expected = tuple(self.card[p] for p in self.parents[v]) + (self.card[v],)
            if t.shape != expected:
                raise ValueError(f"CPT of {v} has shape {t.shape}, expected {expected} (parents' values, then {v}'s)")
            if np.any(t < 0) or not np.allclose(t.sum(axis=-1), 1.0, atol=1e-12):
                raise ValueError(f"CPT of {v}: each row p({v} | parents) must be >= 0 and sum to 1")
        self.order = []
        while len(self.order) < len(self.cpts):
            ready = [v for v in self.cpts if v not in self.order and all(p in self.order for p in self.parents[v])]
            if not ready:
                raise ValueError(f"the graph has a cycle among {sorted(set(self.cpts) - set(self.order))}")
            self.order += ready
        self.children = {v: [c for c in self.order if v in self.parents[c]] for v in self.order}

    def factor(self, v):
        return Factor(self.parents[v] + (v,), self.cpts[v])

    def factors(self):
        return [self.factor(v) for v in self.order]

    def joint(self):
        return product(self.factors())

    def log_prob(self, x, only=None):
        """sum over the variables in `only` (default all) of log p(x_v | x_parents); x: name -> int array."""
        with np.errstate(divide="ignore"):
            return sum(np.log(self.cpts[v][tuple(x[p] for p in self.parents[v]) + (x[v],)])
                       for v in (self.order if only is None else only))

def enumerate_posterior(bn, query, evidence=None):
    """p(query | evidence) by brute force: the whole joint, reduced, summed and normalised."""
    joint = bn.joint().reduce(evidence or {})
    return joint.sum_out(*[v for v in joint.variables if v not in query]).normalize()


def d_separated(parents, x, y, given=()):
    """True when x and y are d-separated by the set `given` in the DAG parents: name -> tuple of parents.

    Reachability ("Bayes ball", Koller & Friedman alg. 3.1): a trail may pass a non-observed chain or fork
    node, and a collider only when the collider or one of its descendants is observed.
    """
    given = set(given)
    if x in given or y in given:
        raise ValueError(f"x={x!r} and y={y!r} must not be in the conditioning set {sorted(given)}")
    children = {v: [c for c in parents if v in parents[c]] for v in parents}
    observed_or_ancestor, stack = set(), list(given)       # colliders with an observed descendant
    while stack:
        v = stack.pop()
        if v not in observed_or_ancestor:
            observed_or_ancestor.add(v)
            stack.extend(parents[v])
    visited, stack = set(), [(x, "up")]
    while stack:
        v, direction = stack.pop()
        if (v, direction) in visited:
            continue
        visited.add((v, direction))
        if v == y:
            return False
        if direction == "up" and v not in given:           # arrived from a child
            stack += [(p, "up") for p in parents[v]] + [(c, "down") for c in children[v]]
        elif direction == "down":                          # arrived from a parent
            if v not in given:
                stack += [(c, "down") for c in children[v]]
            if v in observed_or_ancestor:                  # an active collider
                stack += [(p, "up") for p in parents[v]]
    return True

def conditionally_independent(joint, x, y, given=(), tol=1e-12):
    """Checks x _|_ y | given in a joint Factor: p(x, y, z) p(z) = p(x, z) p(y, z) for all values."""
    given = list(given)
    p_xyz = joint.sum_out(*[v for v in joint.variables if v not in [x, y] + given])
    p_xz, p_yz, p_z = p_xyz.sum_out(y), p_xyz.sum_out(x), p_xyz.sum_out(x, y)
    lhs = (p_xyz * p_z).aligned([x, y] + given)
    rhs = (p_xz * p_yz).aligned([x, y] + given)
    return bool(np.max(np.abs(lhs - rhs)) <= tol * np.max(lhs))


def moralize(parents):
    """The moral graph (道德图) of a DAG: undirected edges {child, parent} plus {parent, parent} for co-parents."""
    edges = set()
    for v, pa in parents.items():
        edges |= {frozenset((v, p)) for p in pa}
        edges |= {frozenset(pair) for pair in itertools.combinations(pa, 2)}
    return edges


def variable_elimination(factors, query, evidence=None, order=None):
    """p(query | evidence) from a list of Factors by variable elimination (变量消除).

    order: the hidden variables in elimination order; by default greedily the one whose product is smallest.
    Returns (posterior Factor over `query` in that order, size of the largest table built).
    """
    evidence = evidence or {}
    factors = [f.reduce(evidence) for f in factors]
    variables = {v for f in factors for v in f.variables}
    if not set(query) <= variables:
        raise ValueError(f"query {query} is not among the (non-evidence) variables {sorted(variables)}")
    hidden = variables - set(query)
    card = {v: f.table.shape[f.variables.index(v)] for f in factors for v in f.variables}

    def cost(v):
        return np.prod([card[u] for u in {u for f in factors if v in f.variables for u in f.variables}])

    largest = 0
    while hidden:
        v = order[len(variables) - len(query) - len(hidden)] if order else min(sorted(hidden), key=cost)
        if v not in hidden:
            raise ValueError(f"elimination order {order} must list each hidden variable {sorted(hidden)} once")
        involved = [f for f in factors if v in f.variables]
        joint_v = product(involved)
        largest = max(largest, joint_v.table.size)
        factors = [f for f in factors if v not in f.variables] + [joint_v.sum_out(v)]
        hidden.remove(v)
    result = product(factors).normalize()
    return Factor(query, result.aligned(query)), largest


def belief_propagation(factors, evidence=None):
    """Sum-product belief propagation (和积信念传播) on a factor graph that is a tree (or a forest).

    Returns (marginals: name -> normalised array, Z = the sum of the product of the reduced factors (p(evidence)
    for a Bayesian network's CPTs; the graph must be connected for Z), number of messages). ValueError on a cycle.
    """
    factors = [f.reduce(evidence or {}) for f in factors]
    edges = [(i, v) for i, f in enumerate(factors) for v in f.variables]
    card = {v: factors[i].table.shape[factors[i].variables.index(v)] for i, v in edges}
    to_var, to_factor = {}, {}                          # (i, v) -> message over v's values
    while len(to_var) + len(to_factor) < 2 * len(edges):
        sent = len(to_var) + len(to_factor)
        for i, v in edges:
            others = [(j, u) for j, u in edges if u == v and j != i]
            if (i, v) not in to_factor and all(e in to_var for e in others):
                to_factor[i, v] = np.prod([to_var[e] for e in others], axis=0) if others else np.ones(card[v])
            inputs = [(i, u) for u in factors[i].variables if u != v]
            if (i, v) not in to_var and all(e in to_factor for e in inputs):
                incoming = product([factors[i]] + [Factor([u], to_factor[i, u]) for _, u in inputs])
                to_var[i, v] = incoming.sum_out(*[u for _, u in inputs]).table
        if len(to_var) + len(to_factor) == sent:        # on a cycle every message waits for another
            raise ValueError("the factor graph has a cycle: use variable elimination or loopy BP")
    beliefs = {v: np.prod([to_var[e] for e in edges if e[1] == v], axis=0) for v in card}
    Z = next(iter(beliefs.values())).sum() * np.prod([f.table for f in factors if not f.variables])
    return {v: b / b.sum() for v, b in beliefs.items()}, float(Z), len(to_var) + len(to_factor)


def mean_field(unary, pairwise, n_sweeps=50):
    """Mean-field variational inference for a pairwise Markov network: unary name -> potential (K_v,),
    pairwise list of ((a, b), table (K_a, K_b)). Coordinate ascent from uniform q_v.
    Returns (q: name -> (K_v,), ELBO after each sweep); the ELBO never falls and stays <= log Z."""
    log_u = {v: np.log(t) for v, t in unary.items()}
    log_pair = [((a, b), np.log(t)) for (a, b), t in pairwise]
    q = {v: np.full(len(t), 1.0 / len(t)) for v, t in unary.items()}
    elbos = []
    for _ in range(n_sweeps):
        for v in q:
            field = log_u[v].copy()
            for (a, b), lp in log_pair:
                if a == v:
                    field += lp @ q[b]
                elif b == v:
                    field += q[a] @ lp
            q[v] = np.exp(field - field.max())
            q[v] /= q[v].sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -sum(np.sum(np.where(p > 0, p * np.log(p), 0.0)) for p in q.values())
        elbos.append(sum(q[v] @ log_u[v] for v in q) + sum(q[a] @ lp @ q[b] for (a, b), lp in log_pair) + entropy)
    return q, elbos


def sample_categorical(probs, rng):
    """One draw per row of probs (..., K) (rows sum to 1): the inverse-CDF method, vectorised."""
    u = rng.random(probs.shape[:-1] + (1,))
    return np.minimum((np.cumsum(probs, axis=-1) < u).sum(axis=-1), probs.shape[-1] - 1)

def ancestral_sample(bn, n, rng, clamp=None):
    """n samples of the network in topological order (祖先采样); `clamp` fixes variables to given values.
    Returns name -> int array of shape (n,)."""
    x = {}
    for v in bn.order:
        if clamp and v in clamp:
            x[v] = np.full(n, clamp[v])
        else:
            probs = bn.cpts[v][tuple(x[p] for p in bn.parents[v])]
            x[v] = sample_categorical(np.broadcast_to(probs, (n, bn.card[v])), rng)
    return x

def rejection_sample(bn, evidence, n, rng):
    """n ancestral samples and a weight per sample: 1 where it agrees with the evidence, else 0 (rejected)."""
    x = ancestral_sample(bn, n, rng)
    return x, np.all([x[v] == value for v, value in evidence.items()], axis=0).astype(np.float64)

def likelihood_weighting(bn, evidence, n, rng):
    """Importance sampling with the evidence clamped: weights w = prod over evidence of p(e | parents)."""
    x = ancestral_sample(bn, n, rng, clamp=evidence)
    return x, np.exp(bn.log_prob(x, only=list(evidence)))

def weighted_estimate(values, weights, card):
    """Running self-normalised estimates of p(v = k): (n, card) after 1, 2, ..., n samples (1/card before any weight)."""
    onehot = np.eye(card)[values] * weights[:, None]
    num, den = np.cumsum(onehot, axis=0), np.cumsum(weights)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 1.0 / card)


def gibbs_sample(bn, evidence, n_sweeps, rng, n_chains=1, burn_in=0):
    """Gibbs sampling (吉布斯采样) of p(x | evidence): n_chains chains in parallel, each sweep redraws every
    hidden variable from p(x_k | Markov blanket). Returns name -> (n_sweeps, n_chains) after burn_in sweeps."""
    hidden = [v for v in bn.order if v not in evidence]
    x = ancestral_sample(bn, n_chains, rng, clamp=evidence)   # a start the evidence allows (CPTs > 0 there)
    trace = {v: np.empty((n_sweeps, n_chains), dtype=np.int64) for v in bn.order}
    for sweep in range(burn_in + n_sweeps):
        for v in hidden:
            blanket = [v] + bn.children[v]                    # the factors that mention v
            logits = np.stack([bn.log_prob({**x, v: np.full(n_chains, k)}, only=blanket)
                               for k in range(bn.card[v])], axis=-1)
            p = np.exp(logits - logits.max(axis=-1, keepdims=True))
            x[v] = sample_categorical(p / p.sum(axis=-1, keepdims=True), rng)
        if sweep >= burn_in:
            for v in bn.order:
                trace[v][sweep - burn_in] = x[v]
    return trace

def metropolis_hastings(bn, evidence, n_steps, rng, n_chains=1, burn_in=0):
    """Metropolis-Hastings (MH) with a symmetric proposal: pick one hidden variable uniformly, propose a
    uniformly random other value, accept with min(1, p(x') / p(x)). Returns (trace as gibbs_sample, acceptance rate)."""
    hidden = [v for v in bn.order if v not in evidence]
    x = ancestral_sample(bn, n_chains, rng, clamp=evidence)
    log_p = bn.log_prob(x)
    trace = {v: np.empty((n_steps, n_chains), dtype=np.int64) for v in bn.order}
    accepted = 0
    for step in range(burn_in + n_steps):
        which = rng.integers(len(hidden), size=n_chains)
        proposal = dict(x)
        for i, v in enumerate(hidden):
            shift = rng.integers(1, bn.card[v], size=n_chains)   # another value, uniformly
            proposal[v] = np.where(which == i, (x[v] + shift) % bn.card[v], x[v])
        log_q = bn.log_prob(proposal)
        with np.errstate(over="ignore"):
            accept = rng.random(n_chains) < np.exp(np.minimum(log_q - log_p, 0.0))
        x = {v: np.where(accept, proposal[v], x[v]) for v in bn.order}
        log_p = np.where(accept, log_q, log_p)
        if step >= burn_in:
            accepted += accept.sum()
            for v in bn.order:
                trace[v][step - burn_in] = x[v]
    return trace, accepted / (n_steps * n_chains)
