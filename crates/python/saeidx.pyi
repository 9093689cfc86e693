"""Query saeidx indexes of SAE feature activations.

Which texts make a feature fire, which features fire on a text (live through the
index's model and SAE), where a feature stays silent, feature statistics, neighbours and
labels, and labels drafted and scored by an LLM. The `*_answer` methods, `feature`,
`silent_contexts`, `sample`, `explain`, `info` and the label methods return the
library's answer types as dicts, field for field what `saeidx ... --json` prints and the
web server's API returns (their JSON Schemas are in the repository's
`schemas/answers/`); `top_texts` and `top_features` return mlxterp's tuples; `*_table`
methods, `draft_labels` and `score_labels` return pyarrow tables.
"""

import os
import pathlib
from typing import Any, Literal, NotRequired, TypedDict

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

Origin = Literal["drafted", "accepted", "edited"]

class Provenance(TypedDict):
    drafted_at: str
    llm: str
    origin: Origin
    prompt_version: str
    request_sha256: str
    reviewed_at: NotRequired[str]

class ScoreSummary(TypedDict):
    balanced_accuracy: float
    failed: int
    false_negatives: int
    false_positives: int
    true_negatives: int
    true_positives: int

class LabelScores(TypedDict):
    detection: NotRequired[ScoreSummary]
    explanation: str
    fuzzing: NotRequired[ScoreSummary]
    llm: str
    prompt_version: str
    scored_at: str

class FeatureLabel(TypedDict, total=False):
    confidence: str
    description: str
    examples: list[str]
    name: str
    notes: str
    provenance: Provenance
    scores: LabelScores

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

class Restriction(TypedDict):
    filter: str | None
    docs: list[int | str] | None

TokenPattern = dict[str, str | int]
"""{"text": " Paris"}, {"id": 6342} or {"regex": "^ [A-Z]"}."""

class TopTexts(TypedDict):
    exclusions: Exclusions
    feature: int
    label: FeatureLabel | None
    rank: str
    restrict: Restriction
    token: TokenPattern | None
    texts: list[TextHit]

class RankedFeature(TypedDict):
    activation: float
    active_tokens: int
    doc: NotRequired[int]
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
    histogram_max: float
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

class LogitEffect(TypedDict):
    token: int
    token_text: str
    value: float

class FeatureLogits(TypedDict):
    top: list[LogitEffect]
    bottom: list[LogitEffect]
    method: str

class DecoderNeighbour(TypedDict):
    cosine: float
    feature: int

class FeatureReport(TypedDict):
    bands: list[QuantileBand]
    decoder_neighbours: list[DecoderNeighbour] | None
    label: FeatureLabel | None
    logits: FeatureLogits | None
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
    restrict: Restriction
    seed: int

class SubsetFeatures(TypedDict):
    aggregate: str
    documents: int
    exclusions: Exclusions
    features: list[RankedFeature]
    restrict: Restriction
    tokens: int

class TokenFeature(TypedDict):
    count: int
    examples: list[TextHit]
    feature: int
    frequency: float
    label: FeatureLabel | None
    max_activation: float
    mean_activation: float

class TokenFeatureProfile(TypedDict):
    exclusions: Exclusions
    features: list[TokenFeature]
    occurrences: int
    restrict: Restriction
    token_ids: list[int]
    tokens: list[TokenPattern]

class ContrastFeature(TypedDict):
    count_a: int
    count_b: int
    examples: list[TextHit]
    feature: int
    label: FeatureLabel | None
    log_odds: float
    mean_a: float
    mean_b: float
    rate_a: float
    rate_b: float
    z: float

class Contrast(TypedDict):
    a: Restriction
    a_over_b: list[ContrastFeature]
    b: Restriction | None
    b_over_a: list[ContrastFeature]
    documents_a: int
    documents_b: int
    exclusions: Exclusions
    min_count: int
    prior: float
    tokens_a: int
    tokens_b: int

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

class SilentContexts(TypedDict):
    contexts: list[TextHit]
    feature: int

Task = Literal["draft", "score"]
Status = Literal[
    "drafted",
    "unchanged",
    "kept_human",
    "scored",
    "stale",
    "unparseable",
    "failed",
    "skipped",
    "not_attempted",
]

class FeatureOutcome(TypedDict):
    answer: str | None
    cached: int
    feature: int
    label: FeatureLabel | None
    reason: str | None
    requests: int
    status: Status

class RequestStats(TypedDict):
    asked: int
    cached: int
    cached_completion_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    estimated_tokens: bool
    failed: int
    prompt_tokens: int
    retries: int
    sent: int

class LabelReport(TypedDict):
    cache: str
    draft_prompt_version: str
    endpoint: str
    features: list[FeatureOutcome]
    features_per_minute: float
    llm: str
    registry: str
    requests: RequestStats
    score_prompt_version: str
    seconds: float
    stopped: str | None
    task: Task

class Evidence(TypedDict, total=False):
    """What the LLM sees of each feature (labelling runs' evidence=...)."""

    bands: int
    context: int
    per_band: int
    same_token: int
    silent: int
    test: int
    top: int

class Document(TypedDict):
    doc: int
    id: str
    source: str
    text: str

class DocumentFeature(TypedDict):
    feature: int
    max_activation: float
    sum_activation: float
    count: int
    position: int
    name: str | None

class TokenActivation(TypedDict):
    feature: int
    activation: float

class DocumentToken(TypedDict):
    position: int
    text: str
    activation: float
    special: bool
    sink: bool
    features: list[TokenActivation]

class DocumentPage(TypedDict):
    doc: int
    id: str
    source: str
    tokens: int
    feature: int | None
    feature_max: float
    page: int
    pages: int
    page_tokens: int
    page_content: list[DocumentToken]
    top_features: list[DocumentFeature]
    exclusions: Exclusions

class IndexProvenance(TypedDict):
    model: str
    model_commit: str | None
    model_type: str
    hook: str
    sae: str
    sae_architecture: str
    sae_rule: str
    d_sae: int
    corpus: list[str]
    saeidx_version: str

class FeatureFrequency(TypedDict):
    feature: int
    count: int
    density: float
    max_activation: float
    name: str | None

class DensityHistogram(TypedDict):
    log10_edges: list[float]
    counts: list[int]
    dead: int

class LabelledFeature(TypedDict):
    feature: int
    name: str | None
    confidence: str | None
    draft: bool

class MetadataColumnInfo(TypedDict):
    name: str
    type: str

class DocumentSummary(TypedDict):
    doc: int
    id: str
    source: str
    tokens: int
    preview: str
    metadata: dict[str, str | int | float | bool | None]

class Overview(TypedDict):
    provenance: IndexProvenance
    counts: QueryCounts
    live_features: int
    dead_features: int
    density: DensityHistogram
    most_frequent: list[FeatureFrequency]
    least_frequent: list[FeatureFrequency]
    labelled: list[LabelledFeature]
    sampled: list[FeatureFrequency]
    metadata_columns: list[MetadataColumnInfo]
    documents: list[DocumentSummary]
    logit_effects: bool

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
        where: str | None = None,
        docs: list[int | str] | None = None,
        token: str | int | None = None,
        token_regex: str | None = None,
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
        where: str | None = None,
        docs: list[int | str] | None = None,
        token: str | int | None = None,
        token_regex: str | None = None,
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
        where: str | None = None,
        docs: list[int | str] | None = None,
        token: str | int | None = None,
        token_regex: str | None = None,
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
        where: str | None = None,
        docs: list[int | str] | None = None,
    ) -> FeatureReport:
        """Everything about a feature, as `saeidx feature --json` prints it."""
    def compare(
        self,
        other: Index,
        *,
        candidates: int = 5,
        by: str = "auto",
        min_score: float = 0.5,
        examples: int = 10,
        context: int = 8,
        sae_a: str | os.PathLike[str] | None = None,
        sae_b: str | os.PathLike[str] | None = None,
        parquet: str | os.PathLike[str] | None = None,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> dict[str, Any]:
        """This index's features compared with `other`'s, as `saeidx compare A B --json`
        prints it (schemas/answers/compare.schema.json): kind "saes" (matches, features
        without counterpart, splits) or "runs" (one SAE, what changed)."""
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
        self,
        n: int = 10,
        *,
        seed: int = 0,
        examples: int = 3,
        context: int = 8,
        where: str | None = None,
        docs: list[int | str] | None = None,
    ) -> Sample:
        """Random live features with their statistics and top examples (of the
        documents where/docs select, when given)."""
    def subset_features(
        self,
        *,
        where: str | None = None,
        docs: list[int | str] | None = None,
        top_k: int = 10,
        aggregate: Aggregate = "max",
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> SubsetFeatures:
        """The strongest features over every token of a set of documents."""
    def token_features(
        self,
        tokens: str | int | list[str | int] | None = None,
        *,
        token_regex: str | None = None,
        top_k: int = 20,
        examples: int = 2,
        context: int = 8,
        include_special: bool = False,
        include_sinks: bool = False,
        where: str | None = None,
        docs: list[int | str] | None = None,
    ) -> TokenFeatureProfile:
        """The features of a token (text or id) or token sequence over its occurrences."""
    def contrast(
        self,
        a: str | None = None,
        b: str | None = None,
        *,
        a_docs: list[int | str] | None = None,
        b_docs: list[int | str] | None = None,
        top_k: int = 10,
        examples: int = 2,
        context: int = 8,
        prior: float = 100.0,
        min_count: int = 5,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> Contrast:
        """Features over-represented in documents A relative to B (or the rest), both ways."""
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
    def silent_contexts(
        self,
        feature_id: int,
        n: int = 10,
        *,
        context: int = 8,
        tokens: list[int] | None = None,
        seed: int = 0,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> SilentContexts:
        """Contexts where a feature fires on no counted token (`saeidx silent --json`):
        anywhere, or centred on the token ids `tokens` (the same words where it does not
        fire)."""
    def label(self, feature_id: int) -> LabelAnswer:
        """The feature's label in the index's registry ({"feature", "label"}), read again
        from disk (so later answers show it too)."""
    def set_label(
        self,
        feature_id: int,
        *,
        name: str | None = None,
        description: str | None = None,
        examples: list[str] | None = None,
        confidence: str | None = None,
        notes: str | None = None,
    ) -> LabelAnswer:
        """A person sets (or with no fields, removes) a feature's label; a draft set this
        way counts as reviewed (accepted if unchanged, else edited)."""
    def accept_label(self, feature_id: int) -> LabelAnswer:
        """A person accepts a feature's LLM draft as it is (ValueError without one)."""
    def draft_labels(
        self,
        features: list[int] | None = None,
        *,
        llm_model: str | None = None,
        llm: str | None = None,
        sample: int | None = None,
        seed: int = 0,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        score: bool = True,
        overwrite_human: bool = False,
        per_prompt: int = 5,
        timeout: float = 120.0,
        max_retries: int = 5,
        evidence: Evidence | None = None,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> pyarrow.Table:
        """Drafts labels with an LLM from the index's examples and scores them (`saeidx
        labels draft`); one row per feature: feature, status, name, description,
        confidence, origin, llm, prompt_version, detection, detection_answered,
        detection_failed, fuzzing, fuzzing_answered, fuzzing_failed (balanced accuracy
        and sample counts; null when not scored), requests, cached, reason, answer. The
        run's totals (a LabelReport without features) are the schema metadata
        b"saeidx.report" (JSON)."""
    def draft_labels_answer(
        self,
        features: list[int] | None = None,
        *,
        llm_model: str | None = None,
        llm: str | None = None,
        sample: int | None = None,
        seed: int = 0,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        score: bool = True,
        overwrite_human: bool = False,
        per_prompt: int = 5,
        timeout: float = 120.0,
        max_retries: int = 5,
        evidence: Evidence | None = None,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> LabelReport:
        """Drafts labels (`saeidx labels draft --json`). features: ids (default every
        live feature) or sample=N at random; llm: the OpenAI-compatible endpoint's base
        URL (default $SAEIDX_LLM_URL, else http://127.0.0.1:8080/v1); llm_model: its
        model name (default $SAEIDX_LLM_MODEL); the API key is read from the variable
        api_key_env, never written. Answers are cached in INDEX/autointerp (or
        work_dir): a rerun sends only what is new. A person's label is kept unless
        overwrite_human."""
    def score_labels(
        self,
        features: list[int] | None = None,
        *,
        llm_model: str | None = None,
        llm: str | None = None,
        sample: int | None = None,
        seed: int = 0,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        per_prompt: int = 5,
        timeout: float = 120.0,
        max_retries: int = 5,
        evidence: Evidence | None = None,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> pyarrow.Table:
        """Scores labels, a person's or drafted, against the index (`saeidx labels
        score`: delphi's detection and fuzzing); features default to every labelled
        one. The table of draft_labels."""
    def score_labels_answer(
        self,
        features: list[int] | None = None,
        *,
        llm_model: str | None = None,
        llm: str | None = None,
        sample: int | None = None,
        seed: int = 0,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        per_prompt: int = 5,
        timeout: float = 120.0,
        max_retries: int = 5,
        evidence: Evidence | None = None,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> LabelReport:
        """Scores labels against the index (`saeidx labels score --json`)."""
    def document(self, doc: int | str) -> Document:
        """A document of the index by number or id."""
    def document_page(
        self,
        doc: int | str,
        *,
        feature: int | None = None,
        page: int = 0,
        page_tokens: int = 400,
        top: int = 20,
        include_special: bool = False,
        include_sinks: bool = False,
    ) -> DocumentPage:
        """One page of a document coloured by a feature (`saeidx document --json`)."""
    def overview(
        self,
        *,
        frequent: int = 10,
        sample: int = 10,
        seed: int = 0,
        docs: int = 50,
        docs_from: int = 0,
    ) -> Overview:
        """What the index holds (`saeidx overview --json`)."""
