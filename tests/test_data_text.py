"""Word corpora (PTB layout): tokens with <eos>, vocabulary, <unk>, batchify/get_batch."""

from __future__ import annotations

import pytest
import torch

from nasforge.data import batchify, get_batch, load_corpus
from nasforge.errors import DataError


def _write(folder, train, valid, test):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_text(text)
    return folder


def test_tiny_corpus_vocabulary_order_and_eos(tmp_path):
    d = _write(tmp_path / "c", " a b c \n b <unk> d \n", " d a \n", " z q \n\n")
    c = load_corpus(d)
    assert c.dictionary.idx2word == ["a", "b", "c", "<eos>", "<unk>", "d"]  # first appearance in train
    assert len(c.dictionary) == 6 and c.dictionary.word2idx["<eos>"] == 3
    assert c.train.tolist() == [0, 1, 2, 3, 1, 4, 5, 3]
    assert c.valid.tolist() == [5, 0, 3]
    assert c.test.tolist() == [4, 4, 3, 3]  # unknown words -> <unk>; an empty line is just <eos>
    assert c.train.dtype == torch.int64


def test_unknown_word_without_unk_is_an_error(tmp_path):
    d = _write(tmp_path / "c", "a b\n", "a\n", "a\nb zebra\n")
    with pytest.raises(DataError, match=r"test.txt line 2: word 'zebra'") as e:
        load_corpus(d)
    assert "\n" not in str(e.value)


def test_not_utf8_is_an_error(tmp_path):
    d = _write(tmp_path / "c", "a\n", "a\n", "a\n")
    (d / "valid.txt").write_bytes(b"a \xff\xfe b\n")
    with pytest.raises(DataError, match="valid.txt is not UTF-8 text"):
        load_corpus(d)


def test_missing_corpus_errors(tmp_path, monkeypatch):
    d = _write(tmp_path / "c", "a\n", "a\n", "a\n")
    (d / "valid.txt").unlink()
    with pytest.raises(DataError, match="lacks valid.txt"):
        load_corpus(d)
    with pytest.raises(DataError, match="unknown corpus"):
        load_corpus(tmp_path / "nope")
    monkeypatch.delenv("NASFORGE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match="ptb data not found"):
        load_corpus("ptb")
    monkeypatch.setenv("NASFORGE_DATA", str(tmp_path))
    _write(tmp_path / "ptb", "x y\n", "y\n", "x\n")
    assert load_corpus("ptb").name == "ptb"
    assert len(load_corpus("ptb", data_dir=tmp_path / "ptb").train) == 3


def test_batchify_and_get_batch():
    data = torch.arange(23)
    b = batchify(data, 4)
    assert b.shape == (5, 4)
    assert b[:, 0].tolist() == [0, 1, 2, 3, 4] and b[:, 3].tolist() == [15, 16, 17, 18, 19]  # remainder dropped
    x, y = get_batch(b, 0, 3)
    assert x.shape == y.shape == (3, 4)
    assert torch.equal(y, b[1:4]) and torch.equal(x, b[0:3])
    x, y = get_batch(b, 2, 3)  # clipped at the end: len - 1 - i = 2
    assert x.shape == (2, 4) and torch.equal(y[-1], b[4])
    x, _ = get_batch(b, 0, 3, seq_len=1)
    assert x.shape == (1, 4)
    with pytest.raises(DataError):
        get_batch(b, 4, 3)
    with pytest.raises(DataError):
        batchify(torch.arange(5), 4)


def test_ptb_shared_counts(shared_data):
    c = load_corpus("ptb")
    assert len(c.dictionary) == 10000
    assert (len(c.train), len(c.valid), len(c.test)) == (929589, 73760, 82430)
    eos = c.dictionary.word2idx["<eos>"]
    assert (c.train == eos).sum() == 42068 and (c.valid == eos).sum() == 3370 and (c.test == eos).sum() == 3761
    assert "<unk>" in c.dictionary and "N" in c.dictionary
    b = batchify(c.train, 80)
    assert b.shape == (929589 // 80, 80)
    x, y = get_batch(b, 0, 35)
    assert x.shape == y.shape == (35, 80)
    assert torch.equal(load_corpus(shared_data / "ptb").valid, c.valid)
