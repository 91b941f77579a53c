"""Word-level language-modelling corpora in the Penn Treebank layout (Mikolov et al., 2010).

A corpus folder holds ``train.txt``, ``valid.txt`` and ``test.txt`` (``ptb.train.txt``
etc. are accepted too), one sentence per line. As in the PyTorch word-LM example that
AWD-LSTM, ENAS and DARTS build on, each line becomes ``line.split() + ['<eos>']``. The
vocabulary is built from the train file only, in order of first appearance (so
``<eos>`` gets the index after the first sentence's words); a word of valid/test that is
not in it maps to ``<unk>`` when the vocabulary has ``<unk>`` (PTB has, and has no such
words), else a :class:`~nasforge.errors.DataError` names it. PTB: 929,589 / 73,760 /
82,430 tokens, 10,000 words.

:func:`batchify` and :func:`get_batch` cut the token stream for truncated BPTT exactly as
the DARTS/AWD-LSTM code does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nasforge.data.paths import resolve_data_dir
from nasforge.errors import DataError

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
#: corpora known by name: name -> folder names under $NASFORGE_DATA / ~/.nasforge/data
CORPORA = {"ptb": ["ptb", "penn"]}


@dataclass
class Dictionary:
    """``word2idx`` / ``idx2word`` of a vocabulary; ``len()`` is its size."""

    word2idx: dict[str, int] = field(default_factory=dict)
    idx2word: list[str] = field(default_factory=list)

    def add_word(self, word: str) -> int:
        i = self.word2idx.get(word)
        if i is None:
            i = self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return i

    def __len__(self) -> int:
        return len(self.idx2word)

    def __contains__(self, word: str) -> bool:
        return word in self.word2idx


@dataclass
class Corpus:
    """Token ids of the three splits (1-D LongTensors, ``<eos>`` after every line)."""

    dictionary: Dictionary
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    name: str = ""
    path: str = ""

    def summary(self) -> str:
        return (
            f"{self.name}: vocabulary {len(self.dictionary)}, tokens train {len(self.train)}, "
            f"valid {len(self.valid)}, test {len(self.test)}"
        )


def _split_file(folder: Path, split: str) -> Path | None:
    for name in (f"{split}.txt", f"ptb.{split}.txt"):
        if (folder / name).is_file():
            return folder / name
    return None


def _is_corpus(folder: Path) -> bool:
    return all(_split_file(folder, s) for s in SPLITS)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _tokenize(path: Path, dictionary: Dictionary, grow: bool) -> torch.Tensor:
    ids: list[int] = []
    w2i = dictionary.word2idx
    unk = w2i.get(UNK)
    for lineno, line in enumerate(_read_lines(path), 1):
        for w in line.split() + [EOS]:
            i = w2i.get(w)
            if i is None:
                if grow:
                    i = dictionary.add_word(w)
                elif unk is not None:
                    i = unk
                else:
                    raise DataError(f"{path} line {lineno}: word {w!r} is not in the training vocabulary and there is no {UNK} token")
            ids.append(i)
    return torch.tensor(ids, dtype=torch.int64)


def resolve_corpus_dir(name_or_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Folder of a corpus given by name (``ptb``) or as a path."""
    key = str(name_or_dir)
    if key.lower() in CORPORA:
        return resolve_data_dir(
            key.lower(),
            CORPORA[key.lower()],
            _is_corpus,
            data_dir,
            hint="it needs train.txt, valid.txt and test.txt (Mikolov's PTB: ptb.{train,valid,test}.txt of simple-examples.tgz)",
        )
    p = Path(os.path.expanduser(key))
    if not p.is_dir():
        raise DataError(f"unknown corpus {key!r}: not a known name ({', '.join(CORPORA)}) nor a folder")
    if not _is_corpus(p):
        missing = [f"{s}.txt" for s in SPLITS if not _split_file(p, s)]
        raise DataError(f"corpus folder {p} lacks {', '.join(missing)}")
    return p


def load_corpus(name_or_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Corpus:
    """Read a PTB-style corpus (see the module docstring)."""
    folder = resolve_corpus_dir(name_or_dir, data_dir)
    d = Dictionary()
    train = _tokenize(_split_file(folder, "train"), d, grow=True)
    if len(train) == 0:
        raise DataError(f"{_split_file(folder, 'train')} is empty")
    valid = _tokenize(_split_file(folder, "valid"), d, grow=False)
    test = _tokenize(_split_file(folder, "test"), d, grow=False)
    name = str(name_or_dir).lower() if str(name_or_dir).lower() in CORPORA else folder.name
    return Corpus(d, train, valid, test, name=name, path=str(folder))


def batchify(data: torch.Tensor, bsz: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Cut a 1-D token stream into ``bsz`` parallel streams: shape ``(nbatch, bsz)``.

    The remainder that does not fill a whole column is dropped; column ``j`` holds
    tokens ``j*nbatch .. (j+1)*nbatch - 1``. (AWD-LSTM/DARTS ``batchify``.)
    """
    if bsz < 1:
        raise DataError(f"batch size must be >= 1, got {bsz}")
    nbatch = data.size(0) // bsz
    if nbatch < 2:
        raise DataError(f"{data.size(0)} tokens are too few for {bsz} streams")
    out = data[: nbatch * bsz].view(bsz, nbatch).t().contiguous()
    return out.to(device) if device is not None else out


def get_batch(source: torch.Tensor, i: int, bptt: int, seq_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``source[i:i+L]`` and targets ``source[i+1:i+1+L]``, each ``(L, bsz)``.

    ``L = min(seq_len or bptt, len(source) - 1 - i)``, as in DARTS's ``get_batch``
    (AWD-LSTM flattens the target with ``.view(-1)``; do that at the loss).
    """
    L = min(seq_len if seq_len else bptt, len(source) - 1 - i)
    if L < 1:
        raise DataError(f"get_batch: position {i} leaves no target in a source of length {len(source)}")
    return source[i : i + L], source[i + 1 : i + 1 + L]
