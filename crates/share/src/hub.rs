//! Indexes on the Hugging Face Hub, as dataset repos.
//!
//! [`fetch`] downloads an index (the repo's root or a folder of it) through hf-hub into
//! the standard cache (`HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`), pinned to the commit the
//! revision names, records the revision so that `HF_HUB_OFFLINE=1` finds it again (and
//! uses that cached copy when the Hub cannot answer, as everything in `saeidx-hub`), and
//! verifies every file (Parquet checksums and rows, query-file chunks) before saying
//! where it is. [`publish`] writes the exact folder to upload plus a dataset card built
//! from the manifest: hf-hub (the well-kept Rust client) downloads but has no upload
//! API, so uploading is `huggingface-cli upload` (printed by the CLI).

use std::{
    fmt::Write,
    fs,
    path::{Path, PathBuf},
};

use saeidx_format::{
    atomic::{StagedDir, write_file},
    manifest::{MANIFEST_FILE, Manifest},
    segments::{SEGMENTS_DIR, SEGMENTS_FILE, SegmentSet},
    verify::VerifyReport,
};
use saeidx_hub::{HubSettings, Listing, Origin, RepoKind, RepoRef};
use saeidx_query::layout::QUERY_DIR;

use crate::{
    ShareError,
    contents::{LABELS_FILE, Verified, verify_all},
};

/// Which index to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The dataset repo, `org/name`.
    pub repo_id: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// The index's folder in the repo (`None`: the root).
    pub folder: Option<String>,
    /// Also copy the index to this plain folder (the cache holds links to blobs).
    pub output: Option<PathBuf>,
}

/// A fetched, verified index.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Where to open it: the cache snapshot's folder, or the output folder.
    pub index: PathBuf,
    /// The commit it came from.
    pub commit: String,
    /// Files fetched or found in the cache.
    pub files: usize,
    /// Whether the files came from the Hub now (false: from the cache, offline or because
    /// the Hub could not answer).
    pub online: bool,
    /// The manifest.
    pub manifest: Manifest,
    /// What verification checked.
    pub report: VerifyReport,
    /// Query-file bytes checked (`None`: the repo has no query files).
    pub query_bytes: Option<u64>,
}

/// Fetches the index `request` names, verifies it and returns where it is.
pub fn fetch(request: &FetchRequest, settings: &HubSettings) -> Result<Fetched, ShareError> {
    let folder = request
        .folder
        .as_deref()
        .unwrap_or("")
        .trim_matches('/')
        .to_string();
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let repo = RepoRef::new(RepoKind::Dataset, &request.repo_id, Some(&request.revision));
    let mut downloaded = 0;
    let resolved = saeidx_hub::resolve(settings, &repo, |listing| {
        downloaded = download(listing, request, &folder, &prefix)?;
        Ok::<(), ShareError>(())
    })?;
    let (snapshot, commit) = (resolved.dir, resolved.commit);
    let online = resolved.origin == Origin::Hub;
    let dir = snapshot.join(&folder);
    let what = format!("{}@{commit} ({})", request.repo_id, dir.display());
    let advice = format!(
        "delete {} from the cache and fetch again; if it happens again, the repo's files are damaged: tell the publisher",
        snapshot.display()
    );
    let verified = verify_all(&dir, &what, &advice)?;
    let files = if online {
        downloaded
    } else {
        verified.files(&dir).len() + usize::from(verified.set.is_some())
    };
    let index = match &request.output {
        Some(output) => {
            copy_index(&dir, &verified, output, true, &[])?;
            let what = output.display().to_string();
            verify_all(output, &what, "the copy is damaged: fetch again")?;
            output.clone()
        }
        None => dir,
    };
    Ok(Fetched {
        index,
        commit,
        files,
        online,
        manifest: verified.manifest,
        report: verified.report,
        query_bytes: verified.query_bytes,
    })
}

/// Downloads the index in `prefix` of a listed repo: the manifest and every file it
/// names (plus query files and labels), or for an index of segments `segments.json`
/// (read once), each segment it names that way, and the labels. Returns the number of
/// files.
fn download(
    repo: &Listing,
    request: &FetchRequest,
    folder: &str,
    prefix: &str,
) -> Result<usize, ShareError> {
    let segments_file = format!("{prefix}{SEGMENTS_FILE}");
    if repo.files.contains(&segments_file) {
        let top = repo.get(&segments_file)?;
        let top = top.parent().map(Path::to_path_buf).unwrap_or_default();
        let read = SegmentSet::read(&top).map_err(|e| ShareError::NotVerified {
            what: format!("{}@{} {segments_file}", request.repo_id, repo.commit),
            reason: e.into(),
            advice: "the repo does not hold a saeidx index this version reads".into(),
        })?;
        let Some(set) = read else {
            return Err(ShareError::Incomplete {
                repo_id: request.repo_id.clone(),
                commit: repo.commit.clone(),
                file: segments_file,
            });
        };
        let mut files = 1;
        for record in &set.segments {
            let segment = format!("{prefix}{SEGMENTS_DIR}/{}/", record.name);
            files += download_index(repo, request, &segment)?;
        }
        let labels = format!("{prefix}{LABELS_FILE}");
        if repo.files.contains(&labels) {
            repo.get(&labels)?;
            files += 1;
        }
        return Ok(files);
    }
    let manifest_file = format!("{prefix}{MANIFEST_FILE}");
    if !repo.files.contains(&manifest_file) {
        let folders: Vec<&str> = repo
            .files
            .iter()
            .filter_map(|f| f.strip_suffix(&format!("/{MANIFEST_FILE}")))
            .filter(|f| !f.ends_with(QUERY_DIR))
            .collect();
        let hint = if repo.files.iter().any(|f| f == MANIFEST_FILE) {
            " (the root holds one)".to_string()
        } else if folders.is_empty() {
            String::new()
        } else {
            format!(" (these folders hold one: {})", folders.join(", "))
        };
        return Err(ShareError::NoIndex {
            repo_id: request.repo_id.clone(),
            revision: request.revision.clone(),
            folder: folder.to_string(),
            hint,
        });
    }
    download_index(repo, request, prefix)
}

/// Downloads the index folder in `prefix` of a listed repo: its manifest and every file
/// it names, its query files and labels. Returns the number of files.
fn download_index(
    repo: &Listing,
    request: &FetchRequest,
    prefix: &str,
) -> Result<usize, ShareError> {
    let manifest_file = format!("{prefix}{MANIFEST_FILE}");
    let dir = repo.get(&manifest_file)?.parent().map(Path::to_path_buf);
    let dir = dir.unwrap_or_default();
    let manifest = Manifest::read(&dir).map_err(|e| ShareError::NotVerified {
        what: format!("{}@{} {manifest_file}", request.repo_id, repo.commit),
        reason: e.into(),
        advice: "the repo does not hold a saeidx index this version reads".into(),
    })?;
    let mut wanted: Vec<String> = manifest
        .parts
        .iter()
        .flat_map(|part| part.files.iter().map(|f| f.path.clone()))
        .collect();
    for file in &wanted {
        if !repo.files.contains(&format!("{prefix}{file}")) {
            return Err(ShareError::Incomplete {
                repo_id: request.repo_id.clone(),
                commit: repo.commit.clone(),
                file: format!("{prefix}{file}"),
            });
        }
    }
    let query_prefix = format!("{prefix}{QUERY_DIR}/");
    wanted.extend(
        repo.files
            .iter()
            .filter_map(|f| f.strip_prefix(prefix))
            .filter(|f| *f == LABELS_FILE || f.starts_with(&query_prefix[prefix.len()..]))
            .map(str::to_string),
    );
    for file in &wanted {
        tracing::info!("fetching {file}");
        repo.get(&format!("{prefix}{file}"))?;
    }
    Ok(wanted.len() + 1)
}

/// Copies the index's files (following the cache's links) to `output`, atomically,
/// with or without the query files, adding `extra` files (name, content) and, for an
/// index of segments, the `segments.json` that was verified. Returns the files written.
fn copy_index(
    dir: &Path,
    verified: &Verified,
    output: &Path,
    keep_query: bool,
    extra: &[(&str, &str)],
) -> Result<Vec<String>, ShareError> {
    let staged = StagedDir::new(output)?;
    let mut written = Vec::new();
    for file in verified.files(dir) {
        if !keep_query && file.contains(&format!("{QUERY_DIR}/")) {
            continue;
        }
        let target = staged.path().join(&file);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(ShareError::io(parent))?;
        }
        fs::copy(dir.join(&file), &target).map_err(ShareError::io(&dir.join(&file)))?;
        written.push(file);
    }
    let segments = verified.segments_json();
    let segments = segments.as_ref().map(|(name, json)| (*name, json.as_str()));
    for (name, content) in extra.iter().copied().chain(segments) {
        write_file(&staged.path().join(name), content.as_bytes())?;
        written.push(name.to_string());
    }
    staged.publish()?;
    Ok(written)
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The index folder.
    pub index: PathBuf,
    /// Where to write the folder to upload.
    pub output: PathBuf,
    /// The dataset repo it is meant for (named in the card's instructions).
    pub repo_id: Option<String>,
    /// Include the query files (derived: a colleague can rebuild them with
    /// `saeidx query build`, but it needs memory; see the card).
    pub query_files: bool,
}

/// A folder ready to upload.
#[derive(Debug, Clone)]
pub struct Published {
    /// The folder.
    pub output: PathBuf,
    /// Its files, relative to it.
    pub files: Vec<String>,
    /// Their total size.
    pub bytes: u64,
}

/// Verifies the index, then writes it with a dataset card (`README.md`) to the output
/// folder, which is verified again.
pub fn publish(request: &PublishRequest) -> Result<Published, ShareError> {
    let what = request.index.display().to_string();
    let verified = verify_all(
        &request.index,
        &what,
        "publish only an index that verifies (rebuild it with `saeidx run`)",
    )?;
    let card = dataset_card(
        &verified.manifest,
        &verified.report,
        request.repo_id.as_deref(),
        request.query_files && verified.query_bytes.is_some(),
        verified.set.is_some(),
    );
    let files = copy_index(
        &request.index,
        &verified,
        &request.output,
        request.query_files,
        &[("README.md", &card)],
    )?;
    let what = request.output.display().to_string();
    verify_all(&request.output, &what, "the copy is damaged: publish again")?;
    let mut bytes = 0;
    for file in &files {
        let path = request.output.join(file);
        bytes += fs::metadata(&path).map_err(ShareError::io(&path))?.len();
    }
    Ok(Published {
        output: request.output.clone(),
        files,
        bytes,
    })
}

/// The dataset card: front matter for the Hub (the Parquet tables as dataset configs),
/// provenance from the manifest, and how to fetch, verify and query the index.
pub fn dataset_card(
    manifest: &Manifest,
    report: &VerifyReport,
    repo_id: Option<&str>,
    query_files: bool,
    segmented: bool,
) -> String {
    let job = &manifest.job;
    // An index of segments keeps each segment's tables in its own folder.
    let tables = if segmented { "segments/*/" } else { "" };
    let repo = repo_id.unwrap_or("ORG/NAME");
    let mut card = String::new();
    let _ = writeln!(card, "---");
    let _ = writeln!(
        card,
        "pretty_name: \"saeidx index: {} {} ({} features)\"",
        job.model.source.replace('"', "'"),
        job.hook,
        job.sae.d_sae
    );
    let _ = writeln!(
        card,
        "tags:\n- saeidx\n- sparse-autoencoder\n- interpretability"
    );
    let _ = writeln!(card, "configs:");
    for table in ["activations", "tokens", "documents"] {
        let _ = writeln!(
            card,
            "- config_name: {table}\n  data_files: \"{tables}{table}/*.parquet\""
        );
    }
    let _ = writeln!(card, "---\n");
    let _ = writeln!(
        card,
        "# saeidx index: {} at `{}`\n",
        job.model.source, job.hook
    );
    let _ = writeln!(
        card,
        "Sparse per-token activations of an SAE's features over a corpus, written by \
saeidx {} (index format version {}). Every token's active features and values are \
in zstd Parquet; `manifest.json` records exactly what produced them and the SHA-256 of \
every file.\n",
        manifest.saeidx_version, manifest.format_version
    );
    let _ = writeln!(card, "| | |\n|---|---|");
    let row = |card: &mut String, key: &str, value: &str| {
        let _ = writeln!(card, "| {key} | {} |", value.replace('|', "\\|"));
    };
    row(
        &mut card,
        "model",
        &format!(
            "`{}` @ {} (weights SHA-256 `{}`)",
            job.model.source,
            job.model
                .commit
                .as_deref()
                .or(job.model.revision.as_deref())
                .unwrap_or("local"),
            job.model.weights_sha256
        ),
    );
    row(
        &mut card,
        "tokenizer",
        &format!("SHA-256 `{}`", job.tokenizer.sha256),
    );
    row(
        &mut card,
        "SAE",
        &format!(
            "`{}` ({}, {}, {} → {} features, SHA-256 `{}`)",
            job.sae.source,
            job.sae.format,
            job.sae.architecture,
            job.sae.d_in,
            job.sae.d_sae,
            job.sae.sha256
        ),
    );
    row(&mut card, "hook", &format!("`{}`", job.hook));
    row(
        &mut card,
        "corpus",
        &job.corpus
            .sources
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for file in &job.corpus.files {
        row(
            &mut card,
            "corpus file",
            &format!(
                "`{}` ({} bytes, SHA-256 `{}`)",
                file.name, file.bytes, file.sha256
            ),
        );
    }
    row(
        &mut card,
        "window",
        &format!(
            "{} tokens, overlap {}",
            job.window.length, job.window.overlap
        ),
    );
    row(
        &mut card,
        "size",
        &format!(
            "{} documents, {} tokens, {} nonzero activations, {} data files ({:.1} MB)",
            report.documents,
            report.tokens,
            report.nonzeros,
            report.files,
            report.bytes as f64 / 1e6
        ),
    );
    let _ = writeln!(card);
    let _ = writeln!(card, "## Use\n\n```bash");
    let _ = writeln!(
        card,
        "saeidx fetch {repo}                 # into the Hugging Face cache, verified"
    );
    let _ = writeln!(
        card,
        "saeidx fetch {repo} --output index  # or as a plain folder"
    );
    if !query_files {
        let _ = writeln!(
            card,
            "saeidx query build index           # the query files (left out: ~16 B per nonzero of memory)"
        );
    }
    let _ = writeln!(card, "saeidx top-texts --index index --feature 123");
    let _ = writeln!(card, "```\n");
    let _ = writeln!(
        card,
        "Any Parquet reader works too, e.g. DuckDB:\n\n```sql\nSELECT doc, position, value FROM '{tables}activations/*.parquet'\nWHERE feature = 123 ORDER BY value DESC LIMIT 10;\n```\n"
    );
    if segmented {
        let _ = writeln!(
            card,
            "This is an index of segments: `segments.json` names the live segments and, for each, \
the ranges of documents removed or changed since (their rows stay in the segment's Parquet; \
saeidx never answers them). Leave those ranges out when reading the Parquet directly.\n"
        );
    }
    let _ = writeln!(
        card,
        "Uploaded with `huggingface-cli upload {repo} . . --repo-type dataset` from this folder."
    );
    card
}

#[cfg(test)]
mod tests {
    use super::*;
    use saeidx_format::verify::verify;
    use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

    #[test]
    fn publishing_copies_the_verified_index_with_a_card() {
        let root = tempfile::tempdir().unwrap();
        let index = root.path().join("index");
        let spec = SyntheticSpec {
            documents: 6,
            tokens_per_document: (5, 20),
            documents_per_part: 3,
            feature_weights: vec![1.0; 8],
            k: 2,
            value_step: 0.5,
            seed: 1,
        };
        write_synthetic_index(&index, &spec).unwrap();
        saeidx_query::build(&index).unwrap();
        let request = PublishRequest {
            index: index.clone(),
            output: root.path().join("upload"),
            repo_id: Some("team/sotu-index".into()),
            query_files: false,
        };
        let published = publish(&request).unwrap();
        assert!(published.files.contains(&"README.md".to_string()));
        assert!(!published.files.iter().any(|f| f.starts_with("query/")));
        let card = fs::read_to_string(request.output.join("README.md")).unwrap();
        assert!(
            card.starts_with("---\n") && card.contains("data_files: \"activations/*.parquet\"")
        );
        assert!(
            card.contains("saeidx fetch team/sotu-index") && card.contains("saeidx query build")
        );
        verify(&request.output).unwrap();

        // A damaged index is not published.
        let part = index.join("activations/part-00000.parquet");
        let mut bytes = fs::read(&part).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        fs::write(&part, bytes).unwrap();
        let error = publish(&PublishRequest {
            output: root.path().join("again"),
            ..request
        })
        .unwrap_err();
        assert!(error.to_string().contains("does not verify"), "{error}");
        assert!(!root.path().join("again").exists());
    }
}
