//! Which feature is which: features compared by their decoder directions and by what
//! they fire on, within one SAE, across two SAEs, and across runs of one SAE.
//!
//! - [`Decoder`] reads an SAE's decoder directions from the file an index records
//!   (safetensors, no MLX), and [`nearest`] finds each feature's nearest directions by
//!   cosine with blocked matrix products and a running top-k, never an n × n matrix.
//! - [`feature_report`] is the `feature` question with its decoder neighbours: the
//!   function every front end answers it with.
//! - [`compare`] answers `saeidx compare A B`: for two SAEs ([`saes`]) each feature's
//!   candidates by decoder cosine and co-activation over shared tokens
//!   ([`coactivation`]), a one-to-one matching, features without counterpart and
//!   splits; for two runs of one SAE ([`runs`]) what changed. [`table`] writes either
//!   as Parquet.
//!
//! Never MLX, a model, the SAE crate or the pipeline: only the query layer, the index
//! format and the Hub cache (to find a Hub SAE's files).

pub mod answers;
pub mod coactivation;
pub mod decoder;
mod error;
pub mod nearest;
pub mod runs;
pub mod saes;
pub mod table;

use std::path::PathBuf;

pub use answers::{
    Candidate, CompareRequest, Comparison, FeatureChange, FeatureMatch, MatchBy, RunComparison,
    SaeComparison, ScoreDistribution, Side, Split,
};
pub use decoder::Decoder;
pub use error::CompareError;
pub use nearest::nearest;
pub use saeidx_query::DecoderNeighbour;

use saeidx_hub::HubSettings;
use saeidx_query::{AnyIndex, FeatureReport, FeatureRequest, QueryError};

/// The `feature` question, with the feature's nearest decoder directions (as many as
/// `request.neighbours`) when the index's SAE file can be read (see
/// [`Decoder::cached_for_index`]); `decoder_neighbours` is `None` when it cannot.
pub fn feature_report(
    index: &AnyIndex,
    request: &FeatureRequest,
) -> Result<FeatureReport, QueryError> {
    let mut report = index.feature(request)?;
    let decoder = index
        .model_source()
        .and_then(|(manifest, dir)| Decoder::cached_for_index(&manifest.job.sae, dir).ok());
    if let Some(decoder) = decoder {
        report.decoder_neighbours =
            decoder_neighbours(&decoder, request.feature, request.neighbours);
    }
    Ok(report)
}

/// The `n` features nearest to `feature` by decoder cosine (`None` when the decoder has
/// no such feature).
pub fn decoder_neighbours(
    decoder: &Decoder,
    feature: u32,
    n: usize,
) -> Option<Vec<DecoderNeighbour>> {
    ((feature as usize) < decoder.d_sae())
        .then(|| nearest(decoder, &[feature], decoder, n, true).remove(0))
}

/// Where to look for the SAE files of the two indexes besides the recorded places.
#[derive(Debug, Clone, Default)]
pub struct SaeFolders {
    /// Folders tried first for A's SAE.
    pub a: Vec<PathBuf>,
    /// Folders tried first for B's SAE.
    pub b: Vec<PathBuf>,
}

/// [`compare`] with the SAE files where the indexes record them (and the Hub settings
/// of the environment): what the web server answers with.
pub fn compare_recorded(
    a: &AnyIndex,
    b: &AnyIndex,
    request: &CompareRequest,
) -> Result<Comparison, CompareError> {
    compare(
        a,
        b,
        &SaeFolders::default(),
        &HubSettings::from_env(),
        request,
    )
}

/// `compare`: two runs of one SAE (equal SHA-256) by what changed, two SAEs by
/// matching their features (reading both decoders). Either index may be an index of
/// segments: it answers as one index over its live documents.
pub fn compare(
    a: &AnyIndex,
    b: &AnyIndex,
    folders: &SaeFolders,
    hub: &HubSettings,
    request: &CompareRequest,
) -> Result<Comparison, CompareError> {
    let (sae_a, sae_b) = (&a.job().sae, &b.job().sae);
    if !sae_a.sha256.is_empty() && sae_a.sha256 == sae_b.sha256 {
        return Ok(Comparison::Runs(runs::compare_runs(a, b, request)?));
    }
    let da = Decoder::for_index(sae_a, a.dir(), &folders.a, hub)?;
    let db = Decoder::for_index(sae_b, b.dir(), &folders.b, hub)?;
    Ok(Comparison::Saes(saes::compare_saes(
        a, b, &da, &db, request,
    )?))
}
