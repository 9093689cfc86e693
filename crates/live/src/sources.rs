//! Where an index's SAE is: the folders given, then the place its manifest records.

use std::path::{Path, PathBuf};

use saeidx_format::manifest::{SaeLocation, SaeRecord};
use saeidx_hub::HubSettings;
use saeidx_sae::{
    formats::{self, LoadOptions, SaeSource},
    sae::Sae,
};

use crate::LiveError;

/// Where live analysis looks for an index's model and SAE besides (for the SAE:
/// before) the places its manifest records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSources {
    /// A model folder or repo to use instead of the recorded one (it must be identical).
    pub model: Option<String>,
    /// SAE folders to try first; the one whose SHA-256 is the index's is used (for an
    /// index whose SAE is not where it was recorded, e.g. a fetched index of a local SAE).
    pub sae: Vec<PathBuf>,
}

/// Where the SAE recorded in the manifest of the index in `index_dir` lives: on the Hub
/// (`org/repo[/subfolder]@commit`, or a SAELens release id resolved to one,
/// `RELEASE/SAE_ID = org/repo/folder@commit`), or a folder relative to the index folder.
/// Indexes written before the location was recorded name a local folder as the job did
/// (relative to where it ran) or a Hub source.
fn recorded_sae(record: &SaeRecord, index_dir: &Path) -> SaeSource {
    let hub = |source: &str| {
        let commit = |resolved: &str| {
            resolved
                .rsplit_once('@')
                .map(|(_, commit)| commit.to_string())
        };
        if let Some((id, resolved)) = source.split_once(" = ") {
            return SaeSource::Release {
                id: id.to_string(),
                revision: commit(resolved),
            };
        }
        match source.rsplit_once('@') {
            Some((location, commit)) => SaeSource::parse(location, Some(commit.to_string())),
            None => SaeSource::parse(source, None),
        }
    };
    record
        .local_folder(index_dir)
        .map_or_else(|| hub(&record.source), SaeSource::Local)
}

/// Loads the SAE of the index in `index_dir`: the first of `given`, then the recorded
/// location, whose SHA-256 is the one recorded. The error names every place tried and
/// what to pass.
pub(crate) fn load_index_sae(
    record: &SaeRecord,
    index_dir: &Path,
    given: &[PathBuf],
    settings: &HubSettings,
) -> Result<Sae, LiveError> {
    let cached = settings.cache_only();
    let mut tried = Vec::new();
    let candidates = given
        .iter()
        .map(|path| SaeSource::Local(path.clone()))
        .chain([recorded_sae(record, index_dir)]);
    let options = LoadOptions {
        norm_scaling_factor: record.norm_scaling_factor,
        ..LoadOptions::default()
    };
    for source in candidates {
        // The cache first (a recorded commit never changes), then the Hub.
        let loaded =
            formats::load(&source, &cached, options.clone()).or_else(|error| match &source {
                SaeSource::Hub { .. } | SaeSource::Release { .. } => {
                    formats::load(&source, settings, options.clone())
                }
                SaeSource::Local(_) => Err(error),
            });
        match loaded {
            Ok(sae) if sae.info.sha256 == record.sha256 => return Ok(sae),
            Ok(_) => tried.push(format!(
                "{source} holds a different SAE (its SHA-256 differs)"
            )),
            Err(error) => tried.push(format!("{source}: {error}")),
        }
    }
    let recorded = match record.location {
        Some(SaeLocation::Relative) => {
            format!("recorded as {} relative to the index folder", record.source)
        }
        _ => format!("recorded as {}", record.source),
    };
    Err(LiveError::SaeNotFound(format!(
        "the index's SAE ({} {}, {} features, SHA-256 {}; {recorded}) was not found: {}. \
         Pass the folder that holds it: --sae FOLDER",
        record.format,
        record.architecture,
        record.d_sae,
        record.sha256,
        tried.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: &str, location: Option<SaeLocation>) -> SaeRecord {
        SaeRecord {
            source: source.into(),
            location,
            format: "mlxterp".into(),
            architecture: "SAE".into(),
            sha256: "0".repeat(64),
            d_in: 8,
            d_sae: 16,
            rule: String::new(),
            settings: Vec::new(),
            norm_scaling_factor: None,
        }
    }

    #[test]
    fn recorded_sae_sources_parse() {
        let index = Path::new("/data/indexes/default");
        let hub = Some(SaeLocation::Hub);
        assert_eq!(
            recorded_sae(&record("org/repo/layer_15/width_16k@abc123", hub), index),
            SaeSource::Hub {
                repo_id: "org/repo".into(),
                subfolder: "layer_15/width_16k".into(),
                revision: Some("abc123".into()),
            }
        );
        assert_eq!(
            recorded_sae(
                &record(
                    "gpt2-small-res-jb/blocks.8.hook_resid_pre = jbloom/x/blocks.8@abc",
                    hub
                ),
                index
            ),
            SaeSource::Release {
                id: "gpt2-small-res-jb/blocks.8.hook_resid_pre".into(),
                revision: Some("abc".into()),
            }
        );
        assert_eq!(
            recorded_sae(&record("org/repo@abc", None), index),
            SaeSource::Hub {
                repo_id: "org/repo".into(),
                subfolder: String::new(),
                revision: Some("abc".into()),
            }
        );
        assert_eq!(
            recorded_sae(&record("../../saes/x", Some(SaeLocation::Relative)), index),
            SaeSource::Local(index.join("../../saes/x"))
        );
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().to_str().unwrap();
        assert_eq!(
            recorded_sae(&record(local, None), index),
            SaeSource::Local(local.into())
        );
    }

    #[test]
    fn a_missing_sae_says_what_to_pass() {
        let index = tempfile::tempdir().unwrap();
        let recorded = record("../gone/sae", Some(SaeLocation::Relative));
        let settings = HubSettings {
            offline: true,
            ..HubSettings::from_env()
        };
        let error = load_index_sae(&recorded, index.path(), &[], &settings)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("--sae FOLDER")
                && error.contains("../gone/sae relative to the index folder")
                && error.contains(&"0".repeat(64))
                && error.contains("16 features"),
            "{error}"
        );
    }
}
