"""Query saeidx indexes of SAE feature activations.

Which texts make a feature fire, which features fire on a text (live through the
index's model and SAE), feature statistics, neighbours and labels. The `*_answer`
methods, `feature`, `sample`, `explain`, `info` and `label` return the query library's
answer types as dicts, field for field what `saeidx ... --json` prints and the web
server's API returns (their JSON Schemas are in the repository's `schemas/answers/`);
`top_texts` and `top_features` return mlxterp's tuples; `*_table` methods return pyarrow
tables.
"""

import os
import pathlib
from typing import Literal, TypedDict

import pyarrow

__version__: str

Rank = Literal["document_max", "token", "document_sum"]
Aggregate = Literal["max", "sum"]

class Exclusions(TypedDict):
    sinks: bool
    special: bool

class QueryCounts(TypedDict):
    content_tokens: int
    documents: int
    features: int
    nonzeros: int
    tokens: int

class Info(TypedDict):
    counts: QueryCounts
    d_sae: int
    dead: list[int] | None
    dead_features: int
    hook: str
    index: str
    labels: int
    live_features: int
    model: str
    sae: str

class FeatureLabel(TypedDict, total=False):
    confidence: str
    description: str
    examples: list[str]
    name: str
    notes: str

class LabelAnswer(TypedDict):
    feature: int
    label: FeatureLabel | None

class Snippet(TypedDict):
    hit_end: int
    hit_start: int
    more_after: bool
    more_before: bool
    text: str

class TextHit(TypedDict):
    activation: float
    doc: int
    id: str
    position: int
    score: float
    snippet: Snippet
    source: str
    token: int

class TopTexts(TypedDict):
    exclusions: Exclusions
    feature: int
    label: FeatureLabel | None
    rank: str
    texts: list[TextHit]

class RankedFeature(TypedDict):
    activation: float
    active_tokens: int
    feature: int
    label: FeatureLabel | None
    position: int
    score: float
    token_text: str

class TopFeatures(TypedDict):
    aggregate: str
    exclusions: Exclusions
    features: list[RankedFeature]
    of: dict[str, object]

class FeatureActivation(TypedDict):
    activation: float
    feature: int

class TokenFeatures(TypedDict):
    features: list[FeatureActivation]
    position: int
    token_text: str

class PerToken(TypedDict):
    exclusions: Exclusions
    of: dict[str, object]
    tokens: list[TokenFeatures]

class FeatureStats(TypedDict):
    count: int
    density: float
    documents: int
    exclusions: Exclusions
    feature: int
    histogram: list[int]
    max_activation: float
    mean_activation: float
    postings: int

QuantileBand = TypedDict(
    "QuantileBand",
    {
        "examples": list[TextHit],
        "from": float,
        "max_activation": float,
        "min_activation": float,
        "to": float,
    },
)

class Neighbour(TypedDict):
    count: int
    feature: int
    jaccard: float
    together: int

class FeatureReport(TypedDict):
    bands: list[QuantileBand]
    label: FeatureLabel | None
    neighbours: list[Neighbour]
    stats: FeatureStats
    top_texts: list[TextHit]

class SampledFeature(TypedDict):
    feature: int
    label: FeatureLabel | None
    stats: FeatureStats
    top_texts: list[TextHit]

class Sample(TypedDict):
    features: list[SampledFeature]
    seed: int

class ExplainedFeature(TypedDict):
    activation: float
    feature: int
    label: FeatureLabel | None
    position: int
    token_text: str
    top_texts: list[TextHit]

class Explain(TypedDict):
    features: list[ExplainedFeature]
    text: str

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
        """What the index holds (`saeidx info --json`)."""
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
    def top_texts_answer(
        self,
        feature_id: int,
        top_k: int = 10,
        *,
        rank: Rank = "token",
        context: int = 8,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> TopTexts:
        """The top-texts answer, as `saeidx top-texts --json` prints it."""
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
        """top_features as a table: feature, score, activation, position, token_text,
        active_tokens, label."""
    def top_features_answer(
        self,
        text: str | None = None,
        *,
        doc: int | str | None = None,
        top_k: int = 10,
        aggregate: Aggregate = "max",
        tokens: tuple[int, int] | None = None,
        per_token: bool = False,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> TopFeatures | PerToken:
        """The top-features answer (or with per_token=True each token's strongest
        features), as `saeidx top-features --json` prints it."""
    def feature(
        self,
        feature_id: int,
        *,
        examples: int = 5,
        bands: int = 4,
        per_band: int = 5,
        neighbours: int = 10,
        context: int = 8,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> FeatureReport:
        """Everything about a feature, as `saeidx feature --json` prints it."""
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
    def sample(
        self, n: int = 10, *, seed: int = 0, examples: int = 3, context: int = 8
    ) -> Sample:
        """Random live features with their statistics and top examples."""
    def explain(
        self,
        text: str,
        *,
        features: int = 5,
        texts: int = 3,
        context: int = 8,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> Explain:
        """A text's strongest features (run live), then each one's top texts."""
    def label(self, feature_id: int) -> LabelAnswer:
        """The feature's label in the index's registry ({"feature", "label"})."""
    def document(self, doc: int | str) -> Document:
        """A document of the index by number or id."""
