//! `saeidx fetch`, `saeidx publish` and `saeidx export`: sharing indexes.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use saeidx_hub::HubSettings;
use saeidx_share::{
    hub::{FetchRequest, PublishRequest},
    neuronpedia::{self, ExportRequest},
};
use serde_json::json;

use crate::{Output, print_json};

/// `saeidx fetch`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    saeidx fetch team/sotu-index                          # into the HF cache; prints the folder\n  \
    saeidx fetch team/sotu-index --revision v2 --output idx # a tag, copied to ./idx\n  \
    saeidx fetch team/indexes --path smollm2/layer15        # an index in a folder of the repo\n  \
    HF_HUB_OFFLINE=1 saeidx fetch team/sotu-index          # from the cache only\n\n\
Uses the Hugging Face cache (HF_HOME), HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE. Every\n\
file is verified against the manifest (and the query files chunk by chunk) first.")]
pub struct FetchArgs {
    /// The dataset repo holding the index, `org/name`.
    repo_id: String,
    /// Branch, tag or commit.
    #[arg(long, default_value = "main")]
    revision: String,
    /// The index's folder inside the repo (default: its root).
    #[arg(long)]
    path: Option<String>,
    /// Also copy the index to this plain folder.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    output_format: Output,
}

/// `saeidx fetch`.
pub fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let request = FetchRequest {
        repo_id: args.repo_id.clone(),
        revision: args.revision.clone(),
        folder: args.path.clone(),
        output: args.output.clone(),
    };
    let fetched = saeidx_share::hub::fetch(&request, &HubSettings::from_env())
        .with_context(|| format!("fetching {}@{}", args.repo_id, args.revision))?;
    if args.output_format.json {
        return print_json(&json!({
            "index": fetched.index,
            "repo_id": args.repo_id,
            "revision": args.revision,
            "commit": fetched.commit,
            "online": fetched.online,
            "files": fetched.files,
            "verified": fetched.report,
            "query_bytes": fetched.query_bytes,
            "model": fetched.manifest.job.model.source,
            "sae": fetched.manifest.job.sae.source,
            "hook": fetched.manifest.job.hook,
        }));
    }
    println!(
        "{}@{} (commit {}): verified {} data files ({:.1} MB), {} documents, {} tokens, {} nonzero activations{}\n{}",
        args.repo_id,
        args.revision,
        fetched.commit,
        fetched.report.files,
        fetched.report.bytes as f64 / 1e6,
        fetched.report.documents,
        fetched.report.tokens,
        fetched.report.nonzeros,
        if fetched.query_bytes.is_some() {
            ", query files"
        } else {
            "; no query files: copy it with --output and run `saeidx query build`"
        },
        fetched.index.display()
    );
    Ok(())
}

/// `saeidx publish`.
#[derive(Args)]
#[command(after_help = "Example:\n  \
    saeidx publish indexes/default --out upload --repo-id team/sotu-index\n  \
    huggingface-cli upload team/sotu-index upload . --repo-type dataset\n\n\
hf-hub, the Rust Hub client, only downloads, so uploading is left to huggingface-cli\n\
(pip install huggingface_hub), which the command prints.")]
pub struct PublishArgs {
    /// The index folder.
    index: PathBuf,
    /// The folder to write (the exact content to upload).
    #[arg(long)]
    out: PathBuf,
    /// The dataset repo it is for (used in the card and the upload command).
    #[arg(long)]
    repo_id: Option<String>,
    /// Leave out the query files (derived; `saeidx query build` remakes them).
    #[arg(long)]
    data_only: bool,
    #[command(flatten)]
    output_format: Output,
}

/// `saeidx publish`.
pub fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let published = saeidx_share::hub::publish(&PublishRequest {
        index: args.index.clone(),
        output: args.out.clone(),
        repo_id: args.repo_id.clone(),
        query_files: !args.data_only,
    })
    .with_context(|| format!("publishing {}", args.index.display()))?;
    let repo = args.repo_id.as_deref().unwrap_or("ORG/NAME");
    let upload = format!(
        "huggingface-cli upload {repo} {} . --repo-type dataset",
        published.output.display()
    );
    if args.output_format.json {
        return print_json(&json!({
            "output": published.output,
            "files": published.files,
            "bytes": published.bytes,
            "upload": upload,
        }));
    }
    println!(
        "wrote {} ({} files, {:.1} MB, with README.md as the dataset card); upload it with:\n  {upload}",
        published.output.display(),
        published.files.len(),
        published.bytes as f64 / 1e6
    );
    Ok(())
}

/// `saeidx export`.
#[derive(Subcommand)]
pub enum ExportCommand {
    /// Features and activation examples in Neuronpedia's import format (jsonl.gz batches).
    #[command(after_help = "Example:\n  \
        saeidx export neuronpedia --index indexes/default --model-id smollm2-135m-instruct \\\n      \
        --owner HuggingFaceTB --dataset \"State of the Union addresses\" --out np\n  \
        # writes np/smollm2-135m-instruct/15-res-saeidx/{model,sourceset,source}.jsonl,\n  \
        #        features/, activations/, explanations/ batch-N.jsonl.gz\n  \
        bash scripts/neuronpedia-import.sh np/smollm2-135m-instruct/15-res-saeidx \\\n      \
        postgresql://postgres:postgres@localhost:5432/postgres\n  \
        # imports it into a Neuronpedia database as Neuronpedia's importer does\n\n\
Neuronpedia's own importer reads the folder from its S3 bucket at v1/<modelId>/<sourceId>/\n\
(see the README).")]
    Neuronpedia(NeuronpediaArgs),
}

/// `saeidx export neuronpedia`.
#[derive(Args)]
pub struct NeuronpediaArgs {
    /// Neuronpedia's id of the model (e.g. gpt2-small): lower-case letters, digits, - and _.
    #[arg(long)]
    model_id: String,
    /// The source set's name; the source id is `<layer>-<set>`.
    #[arg(long, default_value = "res-saeidx")]
    set_name: String,
    /// The Neuronpedia user the records belong to (default: its seeded default user).
    #[arg(long, default_value = neuronpedia::DEFAULT_CREATOR_ID)]
    creator_id: String,
    /// Who made the model (default: the organisation of its Hub repo; empty for a local
    /// model folder).
    #[arg(long)]
    owner: Option<String>,
    /// Whether the model is instruction-tuned (default: a word instruct, it or chat in
    /// its name).
    #[arg(long)]
    instruct: Option<bool>,
    /// The dataset the examples come from, as Neuronpedia shows it (default: the corpus
    /// files' names and SHA-256 prefixes).
    #[arg(long)]
    dataset: Option<String>,
    /// Only these features (default: every live feature).
    #[arg(long = "feature")]
    features: Vec<u32>,
    /// Top examples per feature.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Activation bands below the top, and examples from each.
    #[arg(long, default_value_t = 5)]
    bands: usize,
    /// Examples per band.
    #[arg(long, default_value_t = 5)]
    per_band: usize,
    /// Tokens of context on each side of an example.
    #[arg(long, default_value_t = 32)]
    context: u32,
    /// Features per batch file.
    #[arg(long, default_value_t = 128)]
    features_per_batch: usize,
    /// Name the LLM that drafted a label as its explanationModelName (it must be an
    /// ExplanationModelType the Neuronpedia instance knows, e.g. gpt-4o-mini, or the
    /// import fails; without this flag the LLM is named in the notes only).
    #[arg(long)]
    explanation_model_names: bool,
    /// The export folder.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    index: crate::query::IndexArg,
    #[command(flatten)]
    output_format: Output,
}

/// `saeidx export`.
pub fn export(command: ExportCommand) -> anyhow::Result<()> {
    let ExportCommand::Neuronpedia(args) = command;
    let request = ExportRequest {
        model_id: args.model_id.clone(),
        set_name: args.set_name.clone(),
        creator_id: args.creator_id.clone(),
        owner: args.owner.clone(),
        instruct: args.instruct,
        dataset: args.dataset.clone(),
        features: (!args.features.is_empty()).then(|| args.features.clone()),
        top_examples: args.top,
        bands: args.bands,
        per_band: args.per_band,
        context: args.context,
        features_per_batch: args.features_per_batch,
        explanation_model_names: args.explanation_model_names,
    };
    request.check()?;
    let index = args.index.open()?;
    let exported = neuronpedia::export(&index, &request, &args.out)?;
    if args.output_format.json {
        return print_json(&json!({
            "folder": exported.folder,
            "source_id": exported.source_id,
            "features": exported.features,
            "activations": exported.activations,
            "explanations": exported.explanations,
            "batches": exported.batches,
        }));
    }
    println!(
        "wrote {}: {} features, {} activation examples, {} explanations in {} batch files",
        exported.folder.display(),
        exported.features,
        exported.activations,
        exported.explanations,
        exported.batches
    );
    Ok(())
}
