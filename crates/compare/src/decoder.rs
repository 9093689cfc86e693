//! Decoder directions, read from the SAE file an index records, without MLX.
//!
//! Each feature's decoder row (the direction it writes into the model's activations) is
//! read from the safetensors file of the SAE's format and normalised to unit length, so
//! that a dot product of two rows is their cosine. The files are those `saeidx_sae`
//! loads: mlxterp (`weights.safetensors`, `decoder.weight` `[d_in, d_sae]`, or the
//! encoder's rows when tied), SAELens (`sae_weights.safetensors`, `W_dec`), sparsify
//! (`sae.safetensors`, `W_dec`), Gemma Scope (`params.npz`, NumPy `w_dec`) and Gemma
//! Scope 2 (`params.safetensors`, `w_dec`). The
//! folder's SHA-256 is computed as `saeidx_sae` records it, and a folder whose SHA-256
//! differs from the index's is refused: the directions must be the index's SAE's.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use saeidx_format::manifest::SaeRecord;
use saeidx_hub::{HubError, HubSettings, RepoKind, RepoRef};
use saeidx_tensors::FloatTensor;

use crate::CompareError;

/// An SAE's decoder directions, one unit-length row per feature (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoder {
    d_sae: usize,
    d_in: usize,
    rows: Vec<f32>,
    /// SHA-256 of the SAE's files (as `saeidx_sae` records it); empty when built from rows.
    sha256: String,
}

impl Decoder {
    /// A decoder from `d_sae` rows of `d_in` values (row-major), normalised here. A zero
    /// row (a feature that writes nothing) stays zero: its cosine with anything is 0.
    pub fn from_rows(rows: Vec<f32>, d_sae: usize, d_in: usize) -> Result<Self, CompareError> {
        if d_in == 0 || rows.len() != d_sae * d_in {
            return Err(CompareError::Request(format!(
                "{} decoder values are not {d_sae} rows of {d_in}",
                rows.len()
            )));
        }
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(CompareError::Request(
                "the decoder holds a value that is not finite (NaN or infinite)".into(),
            ));
        }
        let mut rows = rows;
        for row in rows.chunks_exact_mut(d_in) {
            let norm = row
                .iter()
                .map(|v| f64::from(*v).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm > 0.0 {
                row.iter_mut()
                    .for_each(|v| *v = (f64::from(*v) / norm) as f32);
            }
        }
        Ok(Self {
            d_sae,
            d_in,
            rows,
            sha256: String::new(),
        })
    }

    /// Number of features.
    pub fn d_sae(&self) -> usize {
        self.d_sae
    }

    /// Width of each direction (the SAE's input width).
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// The unit direction of `feature`.
    pub fn row(&self, feature: usize) -> &[f32] {
        &self.rows[feature * self.d_in..(feature + 1) * self.d_in]
    }

    /// All rows, row-major.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }

    /// SHA-256 of the SAE's files, as the index manifest records it (empty for a decoder
    /// built from rows).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The cosine of two features' directions.
    pub fn cosine(&self, a: usize, other: &Decoder, b: usize) -> f32 {
        dot(self.row(a), other.row(b))
    }

    /// Reads the decoder of the SAE folder `dir`, detecting its format.
    pub fn read_folder(dir: &Path) -> Result<Self, CompareError> {
        let Some(layout) = Layout::detect(dir) else {
            return Err(CompareError::bad(
                dir,
                "holds no SAE whose decoder saeidx reads: expected mlxterp (config.json + \
                 weights.safetensors), SAELens (cfg.json + sae_weights.safetensors), sparsify \
                 (cfg.json + sae.safetensors) or Gemma Scope (params.npz or params.safetensors)",
            ));
        };
        let path = dir.join(layout.weights);
        let FloatTensor { values, shape } = if layout.weights.ends_with(".npz") {
            saeidx_tensors::read_npz_array(&path, layout.tensor)?
        } else {
            saeidx_tensors::read_safetensors_tensor(&path, layout.tensor)?
        };
        let [first, second] = shape[..] else {
            return Err(CompareError::bad(
                &path,
                format!("{} has shape {shape:?}, not a matrix", layout.tensor),
            ));
        };
        let (rows, d_sae, d_in) = if layout.transposed {
            (transpose(&values, first, second), second, first)
        } else {
            (values, first, second)
        };
        let mut decoder = Self::from_rows(rows, d_sae, d_in)?;
        decoder.sha256 = saeidx_tensors::files_sha256(dir, &layout.hashed())?;
        Ok(decoder)
    }

    /// Reads the decoder of the SAE an index records: the first of `given` folders whose
    /// SHA-256 is the recorded one, then the recorded place (a folder relative to the
    /// index, or a Hub snapshot in the cache; the network is never used). The error names
    /// every place tried.
    pub fn for_index(
        record: &SaeRecord,
        index_dir: &Path,
        given: &[PathBuf],
        hub: &HubSettings,
    ) -> Result<Self, CompareError> {
        let mut tried = Vec::new();
        let recorded = recorded_folder(record, index_dir, hub);
        let candidates = given.iter().cloned().map(Ok).chain([recorded]);
        for candidate in candidates {
            let dir = match candidate {
                Ok(dir) => dir,
                Err(why) => {
                    tried.push(why);
                    continue;
                }
            };
            match Self::read_folder(&dir) {
                Ok(decoder) if decoder.sha256 == record.sha256 && decoder.d_sae == record.d_sae => {
                    return Ok(decoder);
                }
                Ok(_) => tried.push(format!(
                    "{} holds a different SAE (its SHA-256 or width differs)",
                    dir.display()
                )),
                Err(error) => tried.push(error.to_string()),
            }
        }
        Err(CompareError::SaeNotFound {
            index: index_dir.to_path_buf(),
            format: record.format.clone(),
            d_sae: record.d_sae,
            sha256: record.sha256.clone(),
            tried: tried.join("; "),
        })
    }

    /// [`Self::for_index`] with no folders given and the Hub settings of the
    /// environment, read once per SAE (by SHA-256) per process and shared: front ends
    /// that answer many `feature` questions call this.
    pub fn cached_for_index(record: &SaeRecord, index_dir: &Path) -> Result<Arc<Self>, String> {
        static CACHE: OnceLock<Mutex<HashMap<String, Loaded>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Mutex::default);
        let key = format!("{}\n{}", record.sha256, index_dir.display());
        if let Some(found) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return found;
        }
        let loaded = Self::for_index(record, index_dir, &[], &HubSettings::from_env())
            .map(Arc::new)
            .map_err(|e| e.to_string());
        if let Ok(mut cache) = cache.lock() {
            cache.insert(key, loaded.clone());
        }
        loaded
    }
}

/// A decoder read for an index, or why it could not be.
type Loaded = Result<Arc<Decoder>, String>;

/// The dot product of two equally long rows (f64 accumulation).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum::<f64>() as f32
}

/// Gemma Scope's weights file (NumPy arrays; `w_dec` is `[d_sae, d_in]`).
const GEMMA_NPZ: &str = "params.npz";
/// Gemma Scope 2's weights file (the same tensors as safetensors).
const GEMMA_SAFETENSORS: &str = "params.safetensors";

/// Where an SAE format keeps its decoder.
struct Layout {
    /// The safetensors file.
    weights: &'static str,
    /// The config file hashed with it, if any.
    config: Option<&'static str>,
    /// The decoder tensor.
    tensor: &'static str,
    /// Whether the tensor is `[d_in, d_sae]` (rows are its columns).
    transposed: bool,
}

impl Layout {
    /// The layout of the SAE in `dir`, in the order `saeidx_sae` detects formats.
    fn detect(dir: &Path) -> Option<Self> {
        let has = |file: &str| dir.join(file).is_file();
        if has("weights.safetensors") && has("config.json") {
            let config = std::fs::read_to_string(dir.join("config.json")).ok()?;
            let config: serde_json::Value = serde_json::from_str(&config).ok()?;
            if config.get("d_hidden").is_some() {
                let tied = config
                    .get("tied_weights")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                return Some(Self {
                    weights: "weights.safetensors",
                    config: Some("config.json"),
                    tensor: if tied {
                        "encoder.weight"
                    } else {
                        "decoder.weight"
                    },
                    transposed: !tied,
                });
            }
        }
        let (weights, config, tensor) = if has("cfg.json") && has("sae_weights.safetensors") {
            ("sae_weights.safetensors", Some("cfg.json"), "W_dec")
        } else if has("cfg.json") && has("sae.safetensors") {
            ("sae.safetensors", Some("cfg.json"), "W_dec")
        } else if has(GEMMA_NPZ) || has(GEMMA_SAFETENSORS) {
            // Gemma Scope: the NumPy archive first, as `saeidx_sae` reads it.
            (
                if has(GEMMA_NPZ) {
                    GEMMA_NPZ
                } else {
                    GEMMA_SAFETENSORS
                },
                has("config.json").then_some("config.json"),
                "w_dec",
            )
        } else {
            return None;
        };
        Some(Self {
            weights,
            config,
            tensor,
            transposed: false,
        })
    }

    /// The files whose SHA-256 lines make the SAE's SHA-256, in `saeidx_sae`'s order.
    fn hashed(&self) -> Vec<&'static str> {
        match (self.weights, self.config) {
            (GEMMA_NPZ | GEMMA_SAFETENSORS, Some(config)) => vec![self.weights, config],
            (_, Some(config)) => vec![config, self.weights],
            (_, None) => vec![self.weights],
        }
    }
}

/// The folder an index's SAE was recorded in, or why there is none to try.
fn recorded_folder(
    record: &SaeRecord,
    index_dir: &Path,
    hub: &HubSettings,
) -> Result<PathBuf, String> {
    if let Some(folder) = record.local_folder(index_dir) {
        return Ok(folder);
    }
    // `org/repo[/subfolder]@commit`, or `RELEASE/ID = org/repo/folder@commit`.
    let resolved = record
        .source
        .split_once(" = ")
        .map_or(record.source.as_str(), |(_, resolved)| resolved);
    let (location, commit) = resolved
        .rsplit_once('@')
        .map_or((resolved, None), |(l, c)| (l, Some(c)));
    let mut parts = location.splitn(3, '/');
    let (org, name, subfolder) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if org.is_empty() || name.is_empty() {
        return Err(format!(
            "{:?} names neither a folder nor a Hub repo",
            record.source
        ));
    }
    let repo = RepoRef::new(RepoKind::Model, &format!("{org}/{name}"), commit);
    let snapshot = saeidx_hub::resolve(&hub.cache_only(), &repo, |_| Ok::<(), HubError>(()))
        .map_err(|e| format!("{}: {e}", record.source))?;
    Ok(snapshot.dir.join(subfolder))
}

/// A `[rows, cols]` row-major matrix transposed.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}
