"""PyTorch code taught in notebooks/11b_sequence_models.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
from nndl_helpers.chapters.ch11b import viterbi


import torch
from torch import nn

class CRF(nn.Module):
    """A linear-chain CRF layer: nll(emissions, tags, mask) -> mean negative log-likelihood (log Z by the
    forward algorithm, gradient by autograd); decode(emissions, mask) -> list of best tag sequences."""

    def __init__(self, n_tags):
        super().__init__()
        self.trans = nn.Parameter(torch.zeros(n_tags, n_tags))
        self.start = nn.Parameter(torch.zeros(n_tags))
        self.end = nn.Parameter(torch.zeros(n_tags))

    def log_partition(self, emissions, mask):
        alpha = self.start + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + self.trans, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t, None], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions, tags, mask):
        rows, last = torch.arange(len(tags), device=tags.device), mask.sum(dim=1) - 1
        gold = (emissions.gather(2, tags[..., None])[..., 0] * mask).sum(dim=1)
        gold = gold + (self.trans[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(dim=1)
        gold = gold + self.start[tags[:, 0]] + self.end[tags[rows, last]]
        return (self.log_partition(emissions, mask) - gold).mean()

    @torch.no_grad()
    def decode(self, emissions, mask):
        args = [p.detach().cpu().double().numpy() for p in (self.start, self.trans, self.end)]
        return [viterbi(args[0], args[1], e[:n], args[2])[0]
                for e, n in zip(emissions.detach().cpu().double().numpy(), mask.sum(dim=1).cpu().numpy())]

class BiLSTMCRF(nn.Module):
    """Embedding -> bidirectional LSTM -> linear emission scores -> CRF, for tagging character ids (0 = padding)."""

    def __init__(self, vocab_size, n_tags=4, embed=32, hidden=48):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.emit = nn.Linear(2 * hidden, n_tags)
        self.crf = CRF(n_tags)

    def emissions(self, X):
        return self.emit(self.lstm(self.embed(X))[0])

    def nll(self, X, tags, mask):
        return self.crf.nll(self.emissions(X), tags, mask)

    def decode(self, X, mask):
        return self.crf.decode(self.emissions(X), mask)
