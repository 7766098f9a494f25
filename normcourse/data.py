"""Data for the experiments: text that is always there, and a task with a known optimum.

- :func:`python_docs_text`: the English text of Python's own documentation,
  shipped in the standard library (``pydoc_data.topics``), so the default
  corpus needs no download on any machine, Colab included.
- :func:`load_text_file`: any text file of the user's.
- :func:`markov_chain`: a fixed random Markov chain whose entropy rate is the
  lowest loss any model can reach, so a chapter can say how close it got.

All three become a :class:`TokenData` (char-level ids, a train/validation
split, a sha256 of the source recorded with every result) sampled by
:meth:`TokenData.batch` with an explicit ``torch.Generator``.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from normcourse.checks import check_int, check_number


@dataclass
class TokenData:
    """Token ids split into train and validation, plus what produced them."""

    train: torch.Tensor          # 1-D long tensor
    val: torch.Tensor
    vocab_size: int
    sha256: str                  # hash of the source (text, or chain parameters)
    name: str
    itos: list[str] = field(default_factory=list)   # id -> character (text corpora)
    optimal_loss: float | None = None                # entropy rate (Markov chain), nats

    def batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator):
        """Random windows (x, y) of shape (batch_size, block_size); y is x shifted by one."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        data = self.train if split == "train" else self.val
        if len(data) <= block_size:
            raise ValueError(f"{split} split has {len(data)} tokens; need more than block_size={block_size}")
        ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
        offsets = torch.arange(block_size)
        x = data[ix[:, None] + offsets]
        y = data[ix[:, None] + offsets + 1]
        return x, y

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


class CharTokenizer:
    """Characters to ids, the vocabulary sorted so that it is deterministic."""

    def __init__(self, text: str):
        self.itos = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


def python_docs_text() -> str:
    """The stdlib's documentation topics, concatenated in sorted-key order (~465k chars)."""
    from pydoc_data.topics import topics
    return "".join(topics[k] for k in sorted(topics))


def split_sizes(n_tokens: int, val_fraction: float, name: str) -> tuple[int, int]:
    """(train, validation) lengths for ``val_fraction``; both must hold at least one (x, y) pair.

    ``val_fraction`` outside (0, 1) would give a negative or an empty split, which
    slicing accepts silently.  A split also needs more tokens than the model's
    block_size; :func:`normcourse.train.train` checks that once block_size is known.
    """
    check_number("val_fraction", val_fraction, gt=0, lt=1)
    n_val = int(n_tokens * val_fraction)
    n_train = n_tokens - n_val
    if min(n_train, n_val) < 2:
        raise ValueError(f"{name} has {n_tokens} tokens; val_fraction={val_fraction} splits them into "
                         f"{n_train} train and {n_val} validation tokens, and each split needs at least 2 "
                         f"(more than the model's block_size to train)")
    return n_train, n_val


def text_data(text: str, name: str = "text", val_fraction: float = 0.1) -> TokenData:
    """Char-level data from a string; the last ``val_fraction`` is the validation split."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text:
        raise ValueError(f"{name} is empty: there is no text to train on")
    tok = CharTokenizer(text)
    ids = tok.encode(text)
    _, n_val = split_sizes(len(ids), val_fraction, name)
    # a contiguous split (not random windows) so no validation text leaks into training
    return TokenData(ids[: len(ids) - n_val], ids[len(ids) - n_val:], tok.vocab_size,
                     hashlib.sha256(text.encode("utf-8")).hexdigest(), name, tok.itos)


def python_docs(val_fraction: float = 0.1) -> TokenData:
    """The default corpus: Python's documentation, present wherever Python is."""
    return text_data(python_docs_text(), "python_docs", val_fraction)


def load_text_file(path: str | Path, val_fraction: float = 0.1) -> TokenData:
    """A user's own UTF-8 text file as char-level data."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist (absolute path: {path.resolve()})")
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file; give the path to a UTF-8 text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason}); "
                         f"the data file must be UTF-8 text") from None
    if not text:
        raise ValueError(f"text file {str(path)!r} is empty: there is no text to train on")
    return text_data(text, f"file:{path.name}", val_fraction)


def markov_chain(vocab_size: int = 16, n_tokens: int = 100_000, concentration: float = 0.3,
                 seed: int = 0, val_fraction: float = 0.1) -> TokenData:
    """A sequence from a fixed random first-order Markov chain, and its entropy rate.

    Each row of the transition matrix P is drawn from a symmetric Dirichlet
    with the given concentration (small: peaked rows, low entropy).  The best
    possible next-token loss is the entropy rate H = sum_i pi_i H(P_i), with pi
    the stationary distribution; a model that learns the chain reaches it.
    """
    check_int("vocab_size", vocab_size, low=1)
    check_int("n_tokens", n_tokens, low=1)
    check_int("seed", seed)
    # concentration <= 0 is no Dirichlet: torch samples something anyway, silently
    check_number("concentration", concentration, gt=0)
    split_sizes(n_tokens, val_fraction, "the Markov chain")
    g = torch.Generator().manual_seed(seed)
    P = torch._sample_dirichlet(torch.full((vocab_size, vocab_size), concentration, dtype=torch.float64),
                                generator=g)
    P = P / P.sum(1, keepdim=True)
    # stationary distribution: left eigenvector of P for eigenvalue 1, by power iteration
    pi = torch.full((vocab_size,), 1.0 / vocab_size, dtype=torch.float64)
    for _ in range(10_000):
        nxt = pi @ P
        if torch.allclose(nxt, pi, atol=1e-15, rtol=0):
            break
        pi = nxt
    row_entropy = -(P * torch.log(P.clamp_min(1e-300))).sum(1)
    entropy_rate = float((pi * row_entropy).sum())
    # sample the chain: inverse-CDF on uniform draws, one step at a time
    cdf = P.cumsum(1)
    u = torch.rand(n_tokens, generator=g, dtype=torch.float64)
    state = int(torch.multinomial(pi, 1, generator=g))
    cdf_rows = cdf.tolist()
    out = []
    for r in u.tolist():
        state = min(bisect.bisect_right(cdf_rows[state], r), vocab_size - 1)
        out.append(state)
    ids = torch.tensor(out, dtype=torch.long)
    n_val = int(n_tokens * val_fraction)
    sha = hashlib.sha256(P.numpy().tobytes() + repr((n_tokens, seed)).encode()).hexdigest()
    return TokenData(ids[: n_tokens - n_val], ids[n_tokens - n_val:], vocab_size, sha,
                     f"markov(v={vocab_size},c={concentration},seed={seed})",
                     [chr(ord("a") + i) if i < 26 else f"<{i}>" for i in range(vocab_size)],
                     optimal_loss=entropy_rate)


def load(name: str = "python_docs", **kwargs) -> TokenData:
    """Data by name: ``python_docs``, ``markov``, or a path to a text file."""
    if name == "python_docs":
        return python_docs(**kwargs)
    if name == "markov":
        return markov_chain(**kwargs)
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"data must be 'python_docs', 'markov' or a path to a text file, "
                        f"got {type(name).__name__}")
    path = Path(name)
    if path.is_file():
        return load_text_file(name, **kwargs)
    if path.exists():
        raise ValueError(f"data {str(name)!r} is not a regular file (a directory?); choose 'python_docs', "
                         f"'markov' or a path to a UTF-8 text file")
    raise ValueError(f"unknown data {str(name)!r}: not 'python_docs' or 'markov', and no file "
                     f"{str(path.resolve())!r} exists; choose 'python_docs', 'markov' or a path to a text file")


_cache: dict = {}


def cached(name: str = "python_docs", **kwargs) -> TokenData:
    """:func:`load`, memoised: encoding the corpus once per process is enough."""
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _cache:
        _cache[key] = load(name, **kwargs)
    return _cache[key]


def uniform_loss(vocab_size: int) -> float:
    """Loss of guessing uniformly: ln(V) nats."""
    return math.log(vocab_size)
