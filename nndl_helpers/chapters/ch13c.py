"""NumPy code taught in notebooks/13c_diffusion.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np

from nndl_helpers.chapters.ch04a import ACTIVATIONS, affine_backward, affine_forward

SCHEDULES = ("linear", "cosine")


class NoiseSchedule:
    """The variances beta_1..beta_T of the forward process and the products derived from them.

    kind "linear" (Ho et al., 2020): beta_t rises linearly from 1e-4 to 0.02 for T = 1000 (both scaled
         by 1000 / T so that other T give a comparable path);
         "cosine" (Nichol & Dhariwal, 2021): alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2),
         s = 0.008, with beta_t clipped at 0.999.
    Arrays are indexed by t - 1 for t = 1..T (index 0 is the first noising step), float64:
        betas, alphas = 1 - betas, alpha_bars = cumprod(alphas),
        alpha_bars_prev (alpha_bar_{t-1}, with alpha_bar_0 = 1),
        posterior_variance = beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t).
    """

    def __init__(self, T, kind="linear"):
        if int(T) != T or T < 1:
            raise ValueError(f"NoiseSchedule: T must be an integer >= 1, got {T!r}")
        if kind not in SCHEDULES:
            raise ValueError(f"NoiseSchedule: unknown kind {kind!r}; choose one of {SCHEDULES}")
        self.T, self.kind = int(T), kind
        if kind == "linear":
            scale = 1000.0 / self.T
            self.betas = np.linspace(1e-4 * scale, min(0.02 * scale, 0.999), self.T)
        else:
            s = 0.008
            f = np.cos((np.arange(self.T + 1) / self.T + s) / (1 + s) * np.pi / 2) ** 2
            self.betas = np.clip(1 - f[1:] / f[:-1], 0.0, 0.999)
        self.alphas = 1.0 - self.betas
        self.alpha_bars = np.cumprod(self.alphas)
        self.alpha_bars_prev = np.concatenate([[1.0], self.alpha_bars[:-1]])
        self.posterior_variance = self.betas * (1 - self.alpha_bars_prev) / (1 - self.alpha_bars)

    def __repr__(self):
        return f"NoiseSchedule(T={self.T}, kind={self.kind!r})"

    def check_t(self, t):
        """Integer time steps t in 1..T as an int array; ValueError otherwise."""
        t = np.asarray(t)
        if t.size and (not np.issubdtype(t.dtype, np.integer) or t.min() < 1 or t.max() > self.T):
            raise ValueError(f"time steps must be integers in 1..{self.T} for {self!r}, got values in "
                             f"[{t.min()}, {t.max()}] of dtype {t.dtype}")
        return t


def q_sample(x0, t, eps, schedule):
    """The forward process in closed form: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.

    Inputs:  x0 (N, ...) clean data; t (N,) integer steps in 1..T; eps (N, ...) a draw of N(0, I).
    Returns: x_t (N, ...), a sample of q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).
    """
    t = schedule.check_t(t)
    if np.shape(x0) != np.shape(eps) or t.shape != (np.shape(x0)[0],):
        raise ValueError(f"q_sample: x0 {np.shape(x0)} and eps {np.shape(eps)} must have the same shape (N, ...) "
                         f"and t shape (N,), got t {t.shape}")
    a_bar = schedule.alpha_bars[t - 1].reshape((-1,) + (1,) * (np.ndim(x0) - 1)).astype(np.asarray(x0).dtype)
    return np.sqrt(a_bar) * x0 + np.sqrt(1 - a_bar) * eps


from nndl_helpers.chapters.ch07b import he_normal_init
from nndl_helpers.chapters.ch08a import sinusoidal_positional_encoding


def eps_mse_loss(eps_hat, eps):
    """The simplified DDPM objective, mean over all N * D entries of (eps_hat - eps)^2.

    Returns: loss (float) and d eps_hat = 2 (eps_hat - eps) / (N D).
    """
    if np.shape(eps_hat) != np.shape(eps):
        raise ValueError(f"eps_mse_loss: eps_hat {np.shape(eps_hat)} and eps {np.shape(eps)} differ in shape")
    diff = eps_hat - eps
    return float(np.mean(diff * diff)), 2.0 * diff / diff.size


class DenoiserMLP:
    """The noise predictor eps_theta(x_t, t) for vectors x_t (N, D): an MLP that reads t at every layer.

        e   = embed(t), chapter 8a's sinusoidal code of t                      (N, E), fixed features of t
        h_0 = x_t;  h_l = act([h_{l-1} | e] W_l + b_l),  l = 1..L-1          (concatenating e = adding e U_l)
        eps_hat = [h_{L-1} | e] W_L + b_L                                    (N, D)
    params W1, b1, ..., WL, bL: chapter 7's He initialisation (the last layer's ten times smaller, so that
    training starts from eps_hat ~ 0), biases 0. loss(x0, t, eps, schedule) is the DDPM objective L_simple.
    """

    def __init__(self, data_dim=2, hidden=128, depth=3, emb_dim=32, activation="silu", T=100, seed=0, dtype=np.float64):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.data_dim, self.hidden, self.depth, self.emb_dim = int(data_dim), int(hidden), int(depth), int(emb_dim)
        self.activation, self.dtype, self.T = activation, np.dtype(dtype), int(T)
        init_rng, sizes = np.random.default_rng(seed), [self.data_dim] + [self.hidden] * self.depth + [self.data_dim]
        self.params = {}
        for l, (m_in, m_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            gain = math.sqrt(2.0) * (0.1 if l == len(sizes) - 1 else 1.0)
            self.params[f"W{l}"] = he_normal_init(m_in + self.emb_dim, m_out, init_rng, gain=gain).astype(self.dtype)
            self.params[f"b{l}"] = np.zeros(m_out, dtype=self.dtype)
        self.num_params = sum(p.size for p in self.params.values())

    def embed(self, t):
        """e (N, emb_dim) for t (N,); base 10 T: the slowest wave turns about 1/10 of a cycle over t = 1..T."""
        return sinusoidal_positional_encoding(t, self.emb_dim, base=10.0 * self.T).astype(self.dtype)

    def forward(self, x, t):
        """x (N, D), t (N,) or one int for the whole batch (the samplers) -> eps_hat (N, D) and the cache."""
        x, t = np.asarray(x, dtype=self.dtype), (np.full(len(x), t) if np.ndim(t) == 0 else np.asarray(t))
        if x.ndim != 2 or x.shape[1] != self.data_dim or t.shape != (len(x),):
            raise ValueError(f"DenoiserMLP expects x of shape (N, {self.data_dim}) and t (N,), got {x.shape}, {t.shape}")
        e, h, caches = self.embed(t), x, []
        for l in range(1, self.depth + 2):
            z, affine_cache = affine_forward(np.concatenate([h, e], axis=1), self.params[f"W{l}"], self.params[f"b{l}"])
            h, act_cache = ACTIVATIONS[self.activation][0](z) if l <= self.depth else (z, None)
            caches.append((affine_cache, act_cache))
        return z, caches

    def backward(self, dout, cache):
        """dout = dL/d eps_hat (N, D) -> grads keyed like params, plus grads["x"]. The embedding has no parameters."""
        grads = {}
        for l in range(self.depth + 1, 0, -1):
            affine_cache, act_cache = cache[l - 1]
            if l <= self.depth:
                dout = ACTIVATIONS[self.activation][1](dout, act_cache)
            dinput, grads[f"W{l}"], grads[f"b{l}"] = affine_backward(dout, affine_cache)
            dout = dinput[:, :-self.emb_dim]            # the columns of e carry no gradient anywhere
        grads["x"] = dout
        return grads

    def __call__(self, x, t):
        return self.forward(x, t)[0]

    def loss(self, x0, t, eps, schedule):
        """L_simple for a batch: noise x0 to x_t with eps (q_sample), predict eps back. Returns (loss, grads)."""
        eps_hat, cache = self.forward(q_sample(x0, t, eps, schedule), t)
        loss, deps_hat = eps_mse_loss(eps_hat, eps)
        return loss, {k: g for k, g in self.backward(deps_hat, cache).items() if k != "x"}   # parameters only


def ddpm_sample(predict_eps, schedule, x_T, draw_noise, keep_path=False):
    """Ancestral sampling (Ho et al., 2020, Algorithm 2), for NumPy arrays and torch tensors alike.

    For t = T, ..., 1:  x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z,
    z ~ N(0, I) (none at t = 1), sigma_t^2 = beta_tilde_t, the variance of q(x_{t-1} | x_t, x_0).

    predict_eps  function (x_t, t) -> eps_hat with the shape of x_t, t a Python int in 1..T.
    x_T          the starting noise (N, ...); draw_noise(x) returns a fresh N(0, I) draw shaped like x.
    Returns x_0, or with keep_path=True the list [x_T, ..., x_0] (T + 1 entries).
    """
    x, path = x_T, [x_T]
    for t in range(schedule.T, 0, -1):
        beta, alpha, alpha_bar = (float(a[t - 1]) for a in (schedule.betas, schedule.alphas, schedule.alpha_bars))
        mean = (x - beta / math.sqrt(1 - alpha_bar) * predict_eps(x, t)) / math.sqrt(alpha)
        x = mean + math.sqrt(float(schedule.posterior_variance[t - 1])) * draw_noise(x) if t > 1 else mean
        if keep_path:
            path.append(x)
    return path if keep_path else x


def sampling_timesteps(T, steps):
    """`steps` time steps from T down to 1, evenly spaced (DDIM's sub-sequence tau), as a list of ints."""
    if int(steps) != steps or not 1 <= steps <= T:
        raise ValueError(f"the number of sampling steps must be an integer in 1..{T}, got {steps!r}")
    return sorted({int(round(v)) for v in np.linspace(T, 1, int(steps))}, reverse=True)


def ddim_sample(predict_eps, schedule, x_T, steps, eta=0.0, draw_noise=None, clip_x0=None):
    """DDIM sampling (Song et al., 2021) on `steps` of the T time steps; eta = 0 is deterministic.

    From t to the next step s < t (alpha_bar_s = 1 after the last step):
        x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t)
        x_s    = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps_hat + sigma z,
        sigma  = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s).
    With eta = 1 and steps = T this is exactly ddpm_sample. draw_noise is needed only when eta > 0;
    clip_x0 = (lo, hi) clips x0_hat to the data's range (NumPy arrays and torch tensors both have .clip).
    """
    if eta > 0 and draw_noise is None:
        raise ValueError("ddim_sample with eta > 0 adds noise: pass draw_noise")
    taus = sampling_timesteps(schedule.T, steps)
    x = x_T
    for i, t in enumerate(taus):
        a_t = float(schedule.alpha_bars[t - 1])
        a_s = float(schedule.alpha_bars[taus[i + 1] - 1]) if i + 1 < len(taus) else 1.0
        eps_hat = predict_eps(x, t)
        x0_hat = (x - math.sqrt(1 - a_t) * eps_hat) / math.sqrt(a_t)
        if clip_x0 is not None:
            x0_hat = x0_hat.clip(*clip_x0)
            eps_hat = (x - math.sqrt(a_t) * x0_hat) / math.sqrt(1 - a_t)   # the noise that fits the clipped x0_hat
        sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
        x = math.sqrt(a_s) * x0_hat + math.sqrt(max(1 - a_s - sigma**2, 0.0)) * eps_hat
        if sigma > 0:
            x = x + sigma * draw_noise(x)
    return x


def energy_distance(X, Y):
    """Energy distance D^2(P, Q) = 2 E|X - Y| - E|X - X'| - E|Y - Y'| between two samples (Szekely & Rizzo).

    X (n, D), Y (m, D), n, m >= 2. D^2 >= 0 with equality only if P = Q; within-sample terms skip
    the diagonal (U-statistics), so the estimate is unbiased and can be slightly negative when P = Q.
    """
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1] or len(X) < 2 or len(Y) < 2:
        raise ValueError(f"energy_distance needs two samples (n, D), (m, D) with n, m >= 2, got {X.shape}, {Y.shape}")

    def mean_dist(A, B, same):
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T
        d = np.sqrt(np.maximum(sq, 0.0))
        if same:
            return (d.sum() - np.trace(d)) / (len(A) * (len(A) - 1))
        return d.mean()

    return float(2 * mean_dist(X, Y, False) - mean_dist(X, X, True) - mean_dist(Y, Y, True))


from nndl_helpers.chapters.ch07a import Adam, cosine_schedule


def train_denoiser(model, data, schedule, *, steps, batch_size=128, lr=1e-3, lr_min=1e-5, seed=0, on_step=None):
    """Train a DenoiserMLP in place on the rows of `data` (N, D) with L_simple and Adam (chapter 7).

    Every step: a batch of rows, t ~ U{1..T}, eps ~ N(0, I); lr follows a cosine decay from lr to lr_min.
    on_step(step, loss) is called after every step. Returns the list of per-step losses.
    """
    data = np.asarray(data, dtype=model.dtype)
    if data.ndim != 2 or data.shape[1] != model.data_dim:
        raise ValueError(f"train_denoiser: data must have shape (N, {model.data_dim}), got {data.shape}")
    step_rng = np.random.default_rng(seed)
    optimizer, lr_at = Adam(lr=lr), cosine_schedule(lr, steps, lr_min)
    losses = []
    for step in range(int(steps)):
        rows = step_rng.integers(0, len(data), batch_size)
        t = step_rng.integers(1, schedule.T + 1, batch_size)
        eps = step_rng.standard_normal((batch_size, model.data_dim)).astype(model.dtype)
        loss, grads = model.loss(data[rows], t, eps, schedule)
        optimizer.lr = lr_at(step)
        optimizer.step(model.params, grads)
        losses.append(loss)
        if on_step is not None:
            on_step(step, loss)
    return losses
