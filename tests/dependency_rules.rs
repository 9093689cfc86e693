//! The workspace's dependency rules (ARCHITECTURE.md), checked on Cargo's resolved graph:
//! the crates that read indexes, serve them and talk to the Hub build without MLX, the
//! query layer knows nothing of models or the batch pipeline, and the front ends that
//! analyse new texts use live analysis, never the batch pipeline.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use saeidx_tests::repo_root;
use serde_json::Value;

/// `(crate, what it must never reach, why)`: normal and build dependencies, direct or not.
const RULES: &[(&str, &[&str], &str)] = &[
    ("saeidx-format", &["mlx-sys", "mlx-rs"], "on-disk formats"),
    ("saeidx-hub", &["mlx-sys", "mlx-rs"], "Hub resolution"),
    ("saeidx-corpus", &["mlx-sys", "mlx-rs"], "reading corpora"),
    (
        "saeidx-tensors",
        &["mlx-sys", "mlx-rs"],
        "reading SAE weight files",
    ),
    (
        "saeidx-query",
        &[
            "mlx-sys",
            "mlx-rs",
            "saeidx-model",
            "saeidx-sae",
            "saeidx-activations",
            "saeidx-indexer",
            "saeidx-live",
            "saeidx-hub",
        ],
        "answers from index files alone",
    ),
    (
        "saeidx-view",
        &["mlx-sys", "mlx-rs", "saeidx-indexer", "saeidx-live"],
        "pages and the server over the query layer",
    ),
    (
        "saeidx-share",
        &["mlx-sys", "mlx-rs", "saeidx-indexer"],
        "packing, verifying and fetching indexes",
    ),
    (
        "saeidx-autointerp",
        &[
            "mlx-sys",
            "mlx-rs",
            "saeidx-model",
            "saeidx-sae",
            "saeidx-activations",
            "saeidx-indexer",
            "saeidx-live",
        ],
        "labels from index files and an LLM endpoint",
    ),
    (
        "saeidx-compare",
        &[
            "mlx-sys",
            "mlx-rs",
            "saeidx-model",
            "saeidx-sae",
            "saeidx-activations",
            "saeidx-indexer",
            "saeidx-live",
        ],
        "comparing features from index files and SAE decoders read as plain safetensors",
    ),
    ("saeidx-testkit", &["mlx-sys", "mlx-rs"], "test helpers"),
    (
        "saeidx-live",
        &["saeidx-indexer", "saeidx-cluster"],
        "new texts without the batch pipeline",
    ),
    (
        "saeidx-python",
        &["saeidx-indexer", "saeidx-cluster", "saeidx-cli"],
        "the Python package",
    ),
    (
        "saeidx-cli",
        &[
            "mlx-sys",
            "mlx-rs",
            "saeidx-model",
            "saeidx-sae",
            "saeidx-activations",
            "saeidx-indexer",
            "saeidx-live",
            "saeidx-cluster",
            "saeidx-assets",
            "saeidx-cli-model",
        ],
        "the `saeidx` executable, which starts without loading MLX",
    ),
];

/// Crates no library may depend on (outside dev-dependencies), and the one package each
/// may have as a dependant: saeidx-cli's library is the questions of `saeidx`, which
/// `saeidx-model` (the commands that run a model) answers too.
const NEVER_A_DEPENDENCY: &[(&str, Option<&str>)] = &[
    ("saeidx-cli", Some("saeidx-cli-model")),
    ("saeidx-testkit", None),
    ("saeidx-tests", None),
];

/// The workspace's test and bench harnesses, which are no library.
const HARNESSES: &[&str] = &["saeidx-tests", "saeidx-benches"];

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let version = String::from_utf8_lossy(&output.stdout);
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// Each workspace package's normal and build dependencies on this host, by package name
/// (only this platform's: cargo has downloaded no other platform's crates offline).
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut graph = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().expect("resolve") {
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|kind| kind["kind"].as_str() != Some("dev"))
            })
            .map(|dep| names[dep["pkg"].as_str().unwrap()].to_string())
            .collect();
        graph.insert(names[node["id"].as_str().unwrap()].to_string(), deps);
    }
    graph
}

/// Every package `name` reaches, each with the path that reaches it.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeMap<String, String> {
    let mut paths = BTreeMap::new();
    let mut stack = vec![(name.to_string(), name.to_string())];
    while let Some((package, path)) = stack.pop() {
        for dep in graph.get(&package).into_iter().flatten() {
            if !paths.contains_key(dep) {
                let next = format!("{path} -> {dep}");
                paths.insert(dep.clone(), next.clone());
                stack.push((dep.clone(), next));
            }
        }
    }
    paths
}

#[test]
fn crates_depend_only_in_the_allowed_directions() {
    let graph = dependency_graph();
    let mut broken = Vec::new();
    for (package, forbidden, role) in RULES {
        assert!(
            graph.contains_key(*package),
            "{package} is not in the workspace"
        );
        let reached = reachable(&graph, package);
        for target in *forbidden {
            if let Some(path) = reached.get(*target) {
                broken.push(format!("{package} ({role}) reaches {target}: {path}"));
            }
        }
    }
    for (package, deps) in graph
        .iter()
        .filter(|(p, _)| !HARNESSES.contains(&p.as_str()))
    {
        for (target, allowed) in NEVER_A_DEPENDENCY {
            if deps.contains(*target) && *allowed != Some(package.as_str()) {
                broken.push(format!("{package} depends on {target}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rules_catch_a_forbidden_path() {
    // The checker itself: a graph where the query layer reaches MLX through the model.
    let graph = BTreeMap::from([
        (
            "saeidx-query".to_string(),
            BTreeSet::from(["saeidx-model".to_string()]),
        ),
        (
            "saeidx-model".to_string(),
            BTreeSet::from(["mlx-sys".to_string()]),
        ),
    ]);
    let reached = reachable(&graph, "saeidx-query");
    assert_eq!(
        reached.get("mlx-sys").map(String::as_str),
        Some("saeidx-query -> saeidx-model -> mlx-sys")
    );
}
