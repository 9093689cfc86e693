"""Query saeidx indexes of SAE feature activations.

Which texts make a feature fire, which features fire on a text (live through the
index's model and SAE), feature statistics, neighbours and labels; answers as Python
tuples or pyarrow tables.
"""

import os
import pathlib
from typing import Literal, TypedDict

import pyarrow

__version__: str

Rank = Literal["document_max", "token", "document_sum"]
Aggregate = Literal["max", "sum"]

class Info(TypedDict):
    path: pathlib.Path
    model: str
    model_commit: str | None
    sae: str
    hook: str
    d_sae: int
    documents: int
    tokens: int
    content_tokens: int
    nonzeros: int
    live_features: int
    dead_features: int
    labels: int

class FeatureStats(TypedDict):
    feature: int
    count: int
    density: float
    documents: int
    max: float
    mean: float
    histogram: list[int]
    postings: int

class Label(TypedDict):
    name: str | None
    description: str | None
    examples: list[str]
    confidence: str | None
    notes: str | None

class Document(TypedDict):
    doc: int
    id: str
    source: str
    text: str

class SaeidxError(Exception):
    """Base class of saeidx's own errors."""

class NotAnIndexError(SaeidxError):
    """The path is not a saeidx index folder (it has no manifest.json)."""

class IndexNotBuiltError(SaeidxError):
    """The index has no query files yet: run `saeidx query build DIR` once."""

class CorruptIndexError(SaeidxError):
    """The index's files are damaged, do not belong together, or have another format version."""

class LiveAnalysisError(SaeidxError):
    """A text could not run through the index's model and SAE."""

def open(path: str | os.PathLike[str]) -> Index:
    """Opens the saeidx index in the folder `path`.

    Raises FileNotFoundError (no such folder), NotAnIndexError, IndexNotBuiltError or
    CorruptIndexError.
    """

class Index:
    """An opened saeidx index. Every query releases the GIL."""

    @property
    def path(self) -> pathlib.Path:
        """The index folder."""
    @property
    def d_sae(self) -> int:
        """The SAE's number of features (feature ids are 0..d_sae)."""
    @property
    def info(self) -> Info:
        """Folder, model, SAE, hook, counts, live and dead features, labels."""
    def __len__(self) -> int:
        """The number of documents."""
    def top_texts(
        self,
        feature_id: int,
        top_k: int = 10,
        *,
        rank: Rank = "document_max",
        context: int | None = None,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> list[tuple[str, float, int]]:
        """(text, activation, token_position) where the feature fires most, strongest first.

        Like mlxterp's get_top_texts_for_feature. context=None gives the whole
        document's text; a number gives that many tokens on each side of the token.
        """
    def top_texts_table(
        self,
        feature_id: int,
        top_k: int = 10,
        *,
        rank: Rank = "document_max",
        context: int | None = None,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> pyarrow.Table:
        """top_texts as a table: doc, id, source, position, token, activation, score,
        text, hit_start, hit_end (the token's characters in text)."""
    def top_features(
        self,
        text: str | None = None,
        *,
        doc: int | str | None = None,
        top_k: int = 10,
        aggregate: Aggregate = "max",
        tokens: tuple[int, int] | None = None,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> list[tuple[int, float]]:
        """(feature_id, activation) of the strongest features of a text, strongest first.

        Like mlxterp's get_top_features_for_text. text runs live through the index's
        model and SAE; doc is an indexed document's number or id.
        """
    def top_features_table(
        self,
        text: str | None = None,
        *,
        doc: int | str | None = None,
        top_k: int = 10,
        aggregate: Aggregate = "max",
        tokens: tuple[int, int] | None = None,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> pyarrow.Table:
        """top_features as a table: feature, score, max, position, tokens, label."""
    def feature_stats(
        self,
        feature_id: int,
        *,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> FeatureStats:
        """A feature's statistics over the index's counted tokens."""
    def neighbours(
        self,
        feature_id: int,
        top_k: int = 10,
        *,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> list[tuple[int, float]]:
        """(feature_id, jaccard) of the features firing on the same tokens, most similar first."""
    def neighbours_table(
        self,
        feature_id: int,
        top_k: int = 10,
        *,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> pyarrow.Table:
        """neighbours as a table: feature, jaccard, together, count."""
    def label(self, feature_id: int) -> Label | None:
        """The feature's label in the index's registry, or None."""
    def document(self, doc: int | str) -> Document:
        """A document of the index by number or id."""
