"""Does the surface form of a generated prompt give its label away?

A model trained on data where a wrapper ("Hypothetically, ...", "You are DAN ...") or a stem
("Give me step-by-step instructions to ...") occurs mostly with one label learns that phrasing
instead of intent. This audit masks each prompt's request (the verb phrase and any passage) so
only the template is left, fits a bag-of-words logistic regression on one generated set, and
scores it on another: an AUC near 0.5 means the templates carry no label.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from kala_lib import ethics_corpus as corpus
from kala_lib.dataset import Behavior, ConstitutionalExample

MASK = " xreqx "  # one token that stands for the masked request


def _requests_by_key() -> dict[str, corpus.Request]:
    return {r.key: r for f in corpus.families() for r in f.harmful + f.benign}


def template_text(example: ConstitutionalExample, requests: dict[str, corpus.Request] | None = None) -> str | None:
    """The prompt with its request masked, or None for examples not built from one request."""
    requests = requests if requests is not None else _requests_by_key()
    request = requests.get(example.request_key or "")
    if request is None or len(example.turns) != 1:
        return None
    text = example.prompt
    for part in (request.context, request.text):
        if part:
            if part not in text:
                return None
            text = text.replace(part, MASK)
    return text


def _tokens(text: str) -> list[str]:
    words = re.findall(r"[a-z']+", text.lower())
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:])]


def _matrix(texts: Sequence[str], vocab: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for i, text in enumerate(texts):
        for token in set(_tokens(text)):
            j = vocab.get(token)
            if j is not None:
                x[i, j] = 1.0
    return x


def fit_bow(texts: Sequence[str], labels: Sequence[int], l2: float = 1e-3, steps: int = 300, lr: float = 0.5):
    """Binary bag-of-words (unigrams + bigrams) logistic regression by full-batch gradient descent."""
    vocab: dict[str, int] = {}
    for text in texts:
        for token in _tokens(text):
            vocab.setdefault(token, len(vocab))
    x = _matrix(texts, vocab)
    y = np.asarray(labels, dtype=np.float32)
    w = np.zeros(x.shape[1], dtype=np.float32)
    b = np.float32(np.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6)))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        grad = p - y
        w -= lr * (x.T @ grad / len(y) + l2 * w)
        b -= lr * grad.mean()
    return vocab, w, b


def predict(model, texts: Sequence[str]) -> np.ndarray:
    vocab, w, b = model
    return 1 / (1 + np.exp(-(_matrix(texts, vocab) @ w + b)))


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (ties count half): 0.5 is chance."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        raise ValueError("AUC needs both labels")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def labelled_templates(examples: Iterable[ConstitutionalExample]) -> tuple[list[str], list[int]]:
    requests = _requests_by_key()
    texts, labels = [], []
    for example in examples:
        text = template_text(example, requests)
        if text is not None:
            texts.append(text)
            labels.append(int(example.expected_behavior is Behavior.REFUSE))
    return texts, labels


def template_auc(train: Iterable[ConstitutionalExample], test: Iterable[ConstitutionalExample]) -> float:
    """AUC on ``test`` of a template-only classifier fitted on ``train`` (0.5 = no surface signal)."""
    train_texts, train_labels = labelled_templates(train)
    test_texts, test_labels = labelled_templates(test)
    model = fit_bow(train_texts, train_labels)
    return auc(predict(model, test_texts), test_labels)
