"""Text-based race model: racecard comments -> embeddings -> a small linear head.

:class:`SemanticScorer` embeds each runner's racecard text through a
:class:`TextEmbeddingProvider` and fits a conditional-logit (or logistic) head on the
embeddings alone. The default provider, :class:`TfidfProvider`, is offline (TF-IDF +
truncated SVD fit on the training text). :class:`OpenAICompatibleProvider` calls an
OpenAI-compatible ``/embeddings`` endpoint, caches results by text hash and falls back
to an offline provider on any HTTP error or timeout; it is only used when configured.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from racecast.models.base import GroupLayout, RaceModel
from racecast.models.linear import ConditionalLogit, LogisticModel

logger = logging.getLogger(__name__)

HEADS = ("conditional_logit", "logistic")


@runtime_checkable
class TextEmbeddingProvider(Protocol):
    """Anything that turns texts into a ``(len(texts), dim)`` float array.

    Providers that must learn from the training text (like :class:`TfidfProvider`) also
    offer ``fit(texts) -> self``; :class:`SemanticScorer` calls it when present.
    """

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; every call of a fitted provider returns the same width."""
        ...


def _check_texts(texts: list[str], name: str = "texts") -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{name} must be a list of str")
    return list(texts)


class TfidfProvider(BaseEstimator):
    """Offline embeddings: TF-IDF followed by truncated SVD (LSA), fit on training text.

    Args:
        n_components: Embedding width (capped at the vocabulary size minus one; with a
            vocabulary of one term the raw TF-IDF column is used).
        max_features: Vocabulary cap.
        ngram_range: Word n-gram range, e.g. ``(1, 2)``.
        min_df: Minimum document frequency of a term.
        random_state: SVD seed.

    Attributes:
        vectorizer_: The fitted ``TfidfVectorizer``.
        svd_: The fitted ``TruncatedSVD`` (``None`` when the vocabulary is a single term).
    """

    def __init__(
        self,
        n_components: int = 32,
        max_features: int = 5000,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 1,
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.random_state = random_state

    def fit(self, texts: list[str]) -> TfidfProvider:
        """Learn the vocabulary and the SVD projection.

        Args:
            texts: Training texts (non-empty list).

        Returns:
            ``self``.

        Raises:
            ValueError: If ``texts`` is empty or has no usable terms.
        """
        texts = _check_texts(texts)
        if not texts:
            raise ValueError("texts is empty: TfidfProvider needs training text")
        vectorizer = TfidfVectorizer(
            max_features=self.max_features,
            ngram_range=tuple(self.ngram_range),
            min_df=self.min_df,
        )
        tfidf = vectorizer.fit_transform(texts)
        k = min(int(self.n_components), tfidf.shape[1] - 1)
        svd = (
            TruncatedSVD(n_components=k, random_state=self.random_state).fit(tfidf)
            if k >= 1
            else None
        )
        self.vectorizer_ = vectorizer
        self.svd_ = svd
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        """Project ``texts`` into the fitted LSA space.

        Args:
            texts: Texts to embed.

        Returns:
            ``(len(texts), width)`` float64 array.
        """
        check_is_fitted(self, "vectorizer_")
        tfidf = self.vectorizer_.transform(_check_texts(texts))
        if self.svd_ is None:
            return tfidf.toarray().astype(np.float64)
        return self.svd_.transform(tfidf).astype(np.float64)


class OpenAICompatibleProvider(BaseEstimator):
    """Embeddings from an OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

    Results are cached in memory (and under ``cache_dir`` when set, one ``.npy`` per
    text) keyed by ``sha256(model + text)``, so a text is requested at most once.
    ``fit`` fits the offline ``fallback`` on the training text and probes the endpoint
    with it: if the endpoint fails there, the provider stays offline for good (so all its
    embeddings share one space); if it works, a ridge map from fallback to remote
    embeddings is learnt, and a later HTTP failure is answered by mapped fallback
    embeddings. Every fallback logs a warning. Without ``fit``, a failure raises.

    Args:
        base_url: API root, e.g. ``"http://localhost:8000/v1"``.
        model: Embedding model name sent in the request.
        api_key_env: Environment variable holding the API key (sent as a bearer token
            when set and non-empty); ``None`` sends no key.
        timeout: Request timeout in seconds.
        cache_dir: Directory for the on-disk cache (``None`` = memory only).
        batch_size: Texts per request.
        fallback: Offline provider (default: a fresh :class:`TfidfProvider`).
        transport: Optional ``httpx`` transport (tests use ``httpx.MockTransport``).

    Attributes:
        cache_: In-memory cache ``{hash: vector}`` (created on first use).
        fallback_: The fitted offline provider.
        mode_: ``"remote"`` or ``"fallback"``, decided by ``fit``.
        bridge_: Ridge map fallback -> remote space (``None`` in fallback mode).
        last_source_: Where the last ``embed`` answer came from.
        n_requests_: HTTP requests attempted so far.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 10.0,
        cache_dir: str | None = None,
        batch_size: int = 64,
        fallback: Any = None,
        transport: Any = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.fallback = fallback
        self.transport = transport

    # ----------------------------------------------------------------- public API
    def fit(self, texts: list[str]) -> OpenAICompatibleProvider:
        """Fit the fallback on ``texts`` and decide between remote and offline mode.

        Args:
            texts: Training texts.

        Returns:
            ``self``.
        """
        import httpx

        texts = _check_texts(texts)
        base = TfidfProvider() if self.fallback is None else self.fallback
        fallback = clone(base) if hasattr(base, "get_params") else copy.deepcopy(base)
        if hasattr(fallback, "fit"):
            fallback.fit(texts)
        self.fallback_ = fallback
        try:
            remote = self._remote_embed(texts)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            logger.warning(
                "OpenAICompatibleProvider: %s/embeddings unavailable during fit (%s); "
                "using the offline fallback provider from now on",
                self.base_url,
                error,
            )
            self.mode_, self.bridge_ = "fallback", None
        else:
            self.mode_ = "remote"
            self.bridge_ = Ridge(alpha=1.0).fit(np.asarray(fallback.embed(texts)), remote)
        self.last_source_ = self.mode_
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` remotely (cached), or via the fallback (see the class doc).

        Args:
            texts: Texts to embed.

        Returns:
            ``(len(texts), width)`` float64 array.

        Raises:
            RuntimeError: If the endpoint fails and the provider was never fitted.
        """
        import httpx

        texts = _check_texts(texts)
        if getattr(self, "mode_", "remote") == "fallback":
            self.last_source_ = "fallback"
            return np.asarray(self.fallback_.embed(texts), dtype=np.float64)
        try:
            result = self._remote_embed(texts)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            if not hasattr(self, "fallback_"):
                raise RuntimeError(
                    f"OpenAICompatibleProvider: {self.base_url}/embeddings failed ({error}) "
                    "and there is no fitted fallback: call fit(texts) first"
                ) from error
            logger.warning(
                "OpenAICompatibleProvider: %s/embeddings failed (%s); answering with the "
                "offline fallback mapped into the remote space",
                self.base_url,
                error,
            )
            self.last_source_ = "fallback"
            return self.bridge_.predict(np.asarray(self.fallback_.embed(texts)))
        self.last_source_ = "remote"
        return result

    # ------------------------------------------------------------------ internals
    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model}\x00{text}".encode()).hexdigest()

    def _cache_lookup(self, key: str) -> np.ndarray | None:
        if key in self.cache_:
            return self.cache_[key]
        if self.cache_dir is not None:
            path = Path(self.cache_dir) / f"{key}.npy"
            if path.exists():
                vector = np.load(path)
                self.cache_[key] = vector
                return vector
        return None

    def _cache_store(self, key: str, vector: np.ndarray) -> None:
        self.cache_[key] = vector
        if self.cache_dir is not None:
            directory = Path(self.cache_dir)
            directory.mkdir(parents=True, exist_ok=True)
            np.save(directory / f"{key}.npy", vector)

    def _remote_embed(self, texts: list[str]) -> np.ndarray:
        """Embed via the endpoint, requesting only texts missing from the cache."""
        import httpx

        if not hasattr(self, "cache_"):
            self.cache_: dict[str, np.ndarray] = {}
            self.n_requests_ = 0
        keys = [self._key(t) for t in texts]
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in todo and self._cache_lookup(key) is None:
                todo[key] = text
        pending = list(todo.items())
        if pending:
            headers = {}
            api_key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
            if api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            with httpx.Client(
                base_url=self.base_url.rstrip("/"),
                timeout=self.timeout,
                transport=self.transport,
                headers=headers,
            ) as client:
                for first in range(0, len(pending), int(self.batch_size)):
                    batch = pending[first : first + int(self.batch_size)]
                    self.n_requests_ += 1
                    response = client.post(
                        "/embeddings", json={"model": self.model, "input": [t for _, t in batch]}
                    )
                    response.raise_for_status()
                    vectors = self._parse(response.json(), len(batch))
                    for (key, _), vector in zip(batch, vectors, strict=True):
                        self._cache_store(key, vector)
        if not keys:
            return np.empty((0, 0))
        matrix = np.vstack([self._cache_lookup(k) for k in keys]).astype(np.float64)
        return matrix

    @staticmethod
    def _parse(payload: dict[str, Any], expected: int) -> list[np.ndarray]:
        data = payload["data"]
        if len(data) != expected:
            raise ValueError(f"endpoint returned {len(data)} embeddings for {expected} texts")
        ordered = sorted(data, key=lambda item: item.get("index", 0))
        vectors = [np.asarray(item["embedding"], dtype=np.float64) for item in ordered]
        widths = {v.shape for v in vectors}
        if len(widths) != 1 or vectors[0].ndim != 1 or not np.isfinite(np.vstack(vectors)).all():
            raise ValueError(f"endpoint returned malformed embeddings (shapes {sorted(widths)})")
        return vectors


def _text_mask(texts: np.ndarray) -> np.ndarray:
    """True where the entry is a non-blank string."""
    return np.array([isinstance(t, str) and bool(t.strip()) for t in texts], dtype=bool)


class SemanticScorer(RaceModel):
    """Score runners from their racecard text only.

    The text of ``text_column`` is embedded by ``provider`` (fit on the training text
    when it has a ``fit`` method; the configured object itself is cloned, never fitted in
    place), and a linear head is fit on the embeddings alone: a
    :class:`~racecast.models.linear.ConditionalLogit` (default; probabilities are the
    per-race softmax) or a :class:`~racecast.models.linear.LogisticModel` (per-race
    normalised ``P(won)``). Runners without text (missing or blank) get the neutral
    score: the head's score of the mean training embedding (for the conditional logit
    that is 0, the score of an average runner).

    Args:
        text_column: Column of ``X`` holding the text.
        provider: A :class:`TextEmbeddingProvider`; ``None`` = :class:`TfidfProvider()`.
        head: ``"conditional_logit"`` or ``"logistic"``.
        alpha: L2 penalty of the conditional-logit head.
        C: Inverse L2 strength of the logistic head.

    Attributes:
        provider_: The fitted provider.
        head_: The fitted head model.
        embedding_dim_: Embedding width seen in fit.
        mean_embedding_: Mean training embedding (used for rows without text).
        neutral_score_: Score given to rows without text.
    """

    probability_method: ClassVar[str] = "softmax"

    def __init__(
        self,
        text_column: str = "comment",
        provider: Any = None,
        head: str = "conditional_logit",
        alpha: float = 1e-2,
        C: float = 1.0,
    ) -> None:
        self.text_column = text_column
        self.provider = provider
        self.head = head
        self.alpha = alpha
        self.C = C

    def _feature_columns(self, X: pd.DataFrame) -> list[str]:
        if self.text_column not in X.columns:
            raise ValueError(f"X lacks the text column {self.text_column!r} (text_column)")
        return [self.text_column]

    def _extract(self, X: pd.DataFrame, columns: list[str]) -> np.ndarray:
        values = X[columns[0]].astype(object).to_numpy()
        bad = [type(v).__name__ for v in values if not (isinstance(v, str) or pd.isna(v))]
        if bad:
            raise ValueError(
                f"column {columns[0]!r} must hold text or missing values, found {sorted(set(bad))}"
            )
        return np.array([v if isinstance(v, str) else None for v in values], dtype=object)

    def _embed(self, texts: list[str]) -> np.ndarray:
        matrix = np.asarray(self.provider_.embed(texts), dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise RuntimeError(
                f"provider returned shape {matrix.shape} for {len(texts)} texts; "
                "embed must return (len(texts), dim)"
            )
        if not np.isfinite(matrix).all():
            raise RuntimeError("provider returned non-finite embeddings")
        return matrix

    def _embedding_frame(self, embeddings: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(embeddings, columns=[f"emb_{i}" for i in range(embeddings.shape[1])])

    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        has_text = _text_mask(X)
        if not has_text.any():
            raise ValueError(f"column {self.text_column!r} has no text to learn from")
        texts = [str(t) for t in X[has_text]]
        base = TfidfProvider() if self.provider is None else self.provider
        if not isinstance(base, TextEmbeddingProvider):
            raise TypeError(f"provider must have an embed(texts) method, got {type(base).__name__}")
        provider = clone(base) if hasattr(base, "get_params") else copy.deepcopy(base)
        if hasattr(provider, "fit"):
            provider.fit(texts)
        self.provider_ = provider
        present = self._embed(texts)
        mean = present.mean(axis=0)
        embeddings = np.tile(mean, (X.shape[0], 1))
        embeddings[has_text] = present
        if self.head == "conditional_logit":
            head_model: RaceModel = ConditionalLogit(alpha=self.alpha)
        else:
            head_model = LogisticModel(C=self.C)
        head_model.fit(self._embedding_frame(embeddings), pd.Series(y), pd.Series(layout.codes))
        self.head_ = head_model
        self.embedding_dim_ = int(present.shape[1])
        self.mean_embedding_ = mean
        self.neutral_score_ = float(
            head_model.decision_function(self._embedding_frame(mean[None, :]), pd.Series([0]))[0]
        )

    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        scores = np.full(X.shape[0], self.neutral_score_, dtype=np.float64)
        has_text = _text_mask(X)
        if has_text.any():
            embeddings = self._embed([str(t) for t in X[has_text]])
            if embeddings.shape[1] != self.embedding_dim_:
                raise RuntimeError(
                    f"provider returned width {embeddings.shape[1]}, fit saw {self.embedding_dim_}"
                )
            frame = self._embedding_frame(embeddings)
            groups = pd.Series(layout.codes[has_text])
            scores[has_text] = self.head_.decision_function(frame, groups)
        return scores
