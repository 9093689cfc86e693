//! `saeidx export neuronpedia` against Neuronpedia itself: the export of the committed
//! index checked against its JSON Schemas (`schemas/neuronpedia/`) and the index; then
//! imported into a real PostgreSQL holding Neuronpedia's tables
//! (`tests/fixtures/neuronpedia/schema.sql`, written from its Prisma schema) the way its
//! importer inserts (`scripts/neuronpedia-import.sh`), every row counted and read back
//! equal to the export, with exports of one index under two set names and two model ids
//! all imported in full, and the schemas cross-checked against the tables.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use saeidx_tests::{
    job_fixture::{saeidx_err, saeidx_ok},
    postgres::LocalPostgres,
    reference_python, repo_root,
};
use serde_json::Value;

/// Neuronpedia's seeded default user, the export's default creator.
const BOT_USER: &str = "clkht01d40000jv08hvalcvly";

/// The record files of an export and the tables they go to, with each table's key.
const TABLES: [(&str, &str, &[&str]); 6] = [
    ("model", "Model", &["id"]),
    ("sourceset", "SourceSet", &["modelId", "name"]),
    ("source", "Source", &["modelId", "id"]),
    ("feature", "Neuron", &["modelId", "layer", "index"]),
    ("activation", "Activation", &["id"]),
    ("explanation", "Explanation", &["id"]),
];

/// The lines of a jsonl.gz file.
fn gz_lines(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// An export folder's batch files of one kind, in order.
fn batches(folder: &Path, kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(folder.join(kind))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Every record of an export folder, by schema name (`model`, ..., `explanation`).
fn records(folder: &Path) -> BTreeMap<&'static str, Vec<Value>> {
    let mut all = BTreeMap::new();
    for (name, _, _) in TABLES {
        let lines = match name {
            "feature" | "activation" | "explanation" => batches(folder, &format!("{name}s"))
                .iter()
                .flat_map(|file| gz_lines(file))
                .collect(),
            _ => {
                let text = fs::read_to_string(folder.join(format!("{name}.jsonl"))).unwrap();
                assert_eq!(text.lines().count(), 1, "{name}.jsonl: one JSON line");
                text.lines()
                    .map(|line| serde_json::from_str(line).unwrap())
                    .collect()
            }
        };
        all.insert(name, lines);
    }
    all
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// A copy of the committed index with one feature labelled; returns it and the feature.
fn labelled_index(work: &Path) -> (PathBuf, String) {
    let index = work.join("index");
    fs::create_dir_all(&index).unwrap();
    copy_tree(&repo_root().join("tests/fixtures/index-v1"), &index);
    let at = ["--index", index.to_str().unwrap()];
    let top = saeidx_ok(
        &[
            &["top-features", "--doc", "0", "--k", "1", "--json"],
            &at[..],
        ]
        .concat(),
        work,
    );
    let feature = top["features"][0]["feature"].to_string();
    saeidx_ok(
        &[
            &["labels", "set", &feature, "--name", "nation words"][..],
            &[
                "--description",
                "\"the Union\"",
                "--notes",
                "seen in 4 texts",
            ],
            &["--confidence", "medium"],
            &at,
        ]
        .concat(),
        work,
    );
    (index, feature)
}

/// `saeidx export neuronpedia` of `index` into `out` with small example counts and
/// `extra` arguments; returns its JSON.
fn export(work: &Path, index: &Path, out: &Path, model_id: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "export",
        "neuronpedia",
        "--model-id",
        model_id,
        "--top",
        "4",
        "--bands",
        "3",
        "--per-band",
        "2",
        "--context",
        "6",
        "--features-per-batch",
        "50",
    ];
    args.extend(extra);
    args.extend([
        "--out",
        out.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
    ]);
    args.push("--json");
    saeidx_ok(&args, work)
}

#[test]
fn the_neuronpedia_export_validates_and_matches_the_index() {
    let work = tempfile::tempdir().unwrap();
    let (index, labelled_feature) = labelled_index(work.path());
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--index", index.to_str().unwrap(), "--json"]);
        saeidx_ok(&all, work.path())
    };
    let out = work.path().join("np");
    let exported = export(work.path(), &index, &out, "tiny-llama", &[]);
    let folder = out.join("tiny-llama/1-res-saeidx");
    assert_eq!(exported["folder"], folder.to_str().unwrap());

    // Every record against its JSON Schema (schemas/neuronpedia/).
    let status = Command::new(reference_python())
        .arg("-c")
        .arg(VALIDATE)
        .arg(repo_root().join("schemas/neuronpedia"))
        .arg(&folder)
        .status()
        .unwrap();
    assert!(status.success(), "the export matches the schemas");

    // Ids the importer cannot take are refused, with the id to use instead.
    for (model_id, fix) in [("Tiny.Llama", "tiny-llama"), ("tiny llama", "tiny-llama")] {
        let error = saeidx_err(
            &[
                "export",
                "neuronpedia",
                "--model-id",
                model_id,
                "--out",
                "x",
            ],
            work.path(),
        );
        assert!(
            error.contains("lower-case letters") && error.contains(fix),
            "{error}"
        );
    }

    // And against the index: every live feature once, its statistics; every example's
    // tokens, values and maximum; ids unique; each batch's lines share their keys (the
    // importer takes a batch's columns from its first line).
    let (features, examples) = features_and_examples(&folder);
    let info = cli(&["info"]);
    assert_eq!(
        features.len() as u64,
        info["live_features"].as_u64().unwrap(),
        "every live feature"
    );
    for (feature, line) in &features {
        let report = cli(&["feature", &feature.to_string()]);
        assert_eq!(line["frac_nonzero"], report["stats"]["density"]);
        assert_eq!(
            as_f32(&line["maxActApprox"]),
            as_f32(&report["stats"]["max_activation"])
        );
        assert_eq!(
            line["freq_hist_data_bar_heights"],
            report["stats"]["histogram"]
        );
        assert_eq!(line["layer"], "1-res-saeidx");
        assert_eq!(line["sourceSetName"], "res-saeidx");
        assert_eq!(line["hookName"], "blocks.1.hook_resid_post");
        let top = cli(&["top-texts", "--feature", &feature.to_string(), "--k", "4"]);
        check_top_examples(&examples[feature], &top);
    }
    check_records(&records(&folder), &labelled_feature);
}

/// An export's feature lines and activation lines by feature, checked: one line per
/// feature, unique example ids, equal keys per batch, sound examples.
fn features_and_examples(folder: &Path) -> (BTreeMap<u64, Value>, BTreeMap<u64, Vec<Value>>) {
    let mut features = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut examples: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for file in batches(folder, "features") {
        let lines = gz_lines(&file);
        assert!(lines.len() <= 50);
        same_keys(&lines);
        for line in lines {
            let feature: u64 = line["index"].as_str().unwrap().parse().unwrap();
            assert!(features.insert(feature, line).is_none());
        }
    }
    for file in batches(folder, "activations") {
        let lines = gz_lines(&file);
        same_keys(&lines);
        for line in lines {
            assert!(ids.insert(line["id"].as_str().unwrap().to_string()));
            let feature: u64 = line["index"].as_str().unwrap().parse().unwrap();
            assert!(
                features.contains_key(&feature),
                "an example of an exported feature"
            );
            check_example(&line);
            examples.entry(feature).or_default().push(line);
        }
    }
    (features, examples)
}

/// The explanation of the labelled feature, the model and the source of the fixture's
/// export.
fn check_records(records: &BTreeMap<&str, Vec<Value>>, labelled_feature: &str) {
    let explanations = &records["explanation"];
    assert_eq!(explanations.len(), 1);
    let explanation = &explanations[0];
    assert_eq!(explanation["index"], labelled_feature);
    assert_eq!(explanation["description"], "nation words: \"the Union\"");
    assert_eq!(explanation["notes"], "seen in 4 texts\nconfidence: medium");
    assert_eq!(explanation["authorId"], BOT_USER);
    assert!(explanation["typeName"].is_null() && explanation["explanationModelName"].is_null());
    // The model, its source and where the examples come from, without local paths.
    let model = &records["model"][0];
    assert_eq!(model["owner"], "", "a local model folder has no owner");
    assert_eq!(model["displayName"], "model");
    assert_eq!(model["instruct"], false);
    let source = &records["source"][0];
    let dataset = source["dataset"].as_str().unwrap();
    assert!(
        dataset.starts_with("addresses.jsonl (SHA-256 e41a877ff787), notes/a.txt"),
        "{dataset}"
    );
    assert!(
        !source["notes"].as_str().unwrap().contains("/tmp/"),
        "{source}"
    );
}

/// An example's values, maximum and the token it was chosen for.
fn check_example(line: &Value) {
    let values: Vec<f64> = line["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(values.len(), line["tokens"].as_array().unwrap().len());
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(line["maxValue"].as_f64().unwrap(), max);
    let at = line["maxValueTokenIndex"].as_u64().unwrap() as usize;
    assert_eq!(values[at], max);
    // The token the example was chosen for lies in its band.
    let hit = values[line["qualifyingTokenIndex"].as_u64().unwrap() as usize];
    assert!(hit > 0.0 && hit <= line["binMax"].as_f64().unwrap());
    let bin_min = line["binMin"].as_f64().unwrap();
    assert!(bin_min == -1.0 || hit >= bin_min);
}

/// The top examples (`binMin` -1) are the index's top texts, strongest first, each at
/// the hit's token.
fn check_top_examples(examples: &[Value], top: &Value) {
    let tops: Vec<&Value> = examples.iter().filter(|e| e["binMin"] == -1.0).collect();
    let texts = top["texts"].as_array().unwrap();
    assert_eq!(tops.len(), texts.len());
    for (example, text) in tops.iter().zip(texts) {
        let at = example["qualifyingTokenIndex"].as_u64().unwrap() as usize;
        assert_eq!(as_f32(&example["values"][at]), as_f32(&text["activation"]));
        assert_eq!(example["dataIndex"], text["id"]);
        // The qualifying token is the hit: its piece ends with the hit's text.
        let snippet = &text["snippet"];
        let hit = snippet["text"]
            .as_str()
            .unwrap()
            .get(
                snippet["hit_start"].as_u64().unwrap() as usize
                    ..snippet["hit_end"].as_u64().unwrap() as usize,
            )
            .unwrap();
        let piece = example["tokens"][at].as_str().unwrap();
        assert!(piece.ends_with(hit), "{piece:?} vs {hit:?}");
    }
}

fn as_f32(value: &Value) -> f32 {
    value.as_f64().unwrap() as f32
}

/// Asserts that all lines have the keys of the first.
fn same_keys(lines: &[Value]) {
    let keys =
        |line: &Value| -> Vec<String> { line.as_object().unwrap().keys().cloned().collect() };
    if let Some(first) = lines.first() {
        assert!(lines.iter().all(|line| keys(line) == keys(first)));
    }
}

/// Validates every record of an export folder against the schemas (python jsonschema).
const VALIDATE: &str = r#"
import gzip, json, pathlib, sys
from jsonschema import Draft202012Validator
schemas, folder = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def validator(name):
    schema = json.loads((schemas / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
checked = 0
for name in ["model", "sourceset", "source"]:
    for line in (folder / f"{name}.jsonl").read_text().splitlines():
        validator(name).validate(json.loads(line)); checked += 1
for kind, name in [("features", "feature"), ("activations", "activation"), ("explanations", "explanation")]:
    v = validator(name)
    for path in sorted((folder / kind).glob("batch-*.jsonl.gz")):
        for line in gzip.open(path, "rt", encoding="utf-8"):
            v.validate(json.loads(line)); checked += 1
assert checked > 10, checked
print(f"{checked} records valid")
"#;

#[test]
fn neuronpedia_exports_import_into_its_schema_in_postgres() {
    let pg = LocalPostgres::start();
    pg.sql_file(&repo_root().join("tests/fixtures/neuronpedia/schema.sql"));
    // Neuronpedia's seed creates its default user (prisma/seed.ts).
    pg.sql(&format!(
        "INSERT INTO \"User\" (id, name, bot, admin, \"emailUnsubscribeCode\") VALUES ('{BOT_USER}', 'bot', true, true, md5(random()::text))"
    ));
    check_schemas_against_tables(&pg);

    let work = tempfile::tempdir().unwrap();
    let (index, _) = labelled_index(work.path());
    let out = work.path().join("np");
    // One index under two set names and two model ids (the second model with what a
    // Hub model would carry).
    let exports = [
        ("tiny-llama", "res-saeidx", vec![]),
        ("tiny-llama", "res-saeidx-b", vec![]),
        (
            "tiny-llama-chat",
            "res-saeidx",
            vec![
                "--owner",
                "saeidx-tests",
                "--instruct",
                "true",
                "--dataset",
                "SOTU",
            ],
        ),
    ];
    let mut expected: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut folders = Vec::new();
    let mut models = HashSet::new();
    for (model_id, set_name, extra) in &exports {
        let mut args = vec!["--set-name", *set_name];
        args.extend(extra);
        let exported = export(work.path(), &index, &out, model_id, &args);
        let folder = PathBuf::from(exported["folder"].as_str().unwrap());
        for (name, lines) in records(&folder) {
            expected.entry(name).or_default().extend(lines);
        }
        // Every file's rows are new (but the model's, after its first source): none
        // collides with another export's.
        let new_model = models.insert(*model_id);
        for (table, new, of) in import(&pg, &folder) {
            let expected = if table.starts_with("Model ") && !new_model {
                0
            } else {
                of
            };
            assert_eq!(new, expected, "{table}: new rows of {}", folder.display());
        }
        folders.push(folder);
    }
    // Importing an export again adds nothing.
    for (table, new, of) in import(&pg, &folders[0]) {
        assert_eq!(new, 0, "{table}: re-importing adds none of {of}");
    }

    check_read_back(&pg, &expected);
    let counts = pg.sql("SELECT count(*) FROM \"Neuron\" GROUP BY \"modelId\", layer ORDER BY 1");
    let counts: Vec<&str> = counts.lines().collect();
    assert_eq!(counts.len(), 3, "three sources' features: {counts:?}");
    assert!(counts.iter().all(|c| *c == counts[0]));
}

/// Every table holds one row per distinct record of the exports, equal to it in every
/// field (each of which is a column).
fn check_read_back(pg: &LocalPostgres, expected: &BTreeMap<&str, Vec<Value>>) {
    for (name, table, key) in TABLES {
        let rows = pg.sql(&format!(
            "SELECT coalesce(json_agg(t), '[]') FROM \"{table}\" t"
        ));
        let rows: Vec<Value> = serde_json::from_str(&rows).unwrap();
        let by_key: BTreeMap<Vec<String>, &Value> =
            rows.iter().map(|row| (row_key(row, key), row)).collect();
        let lines = &expected[name];
        // Models are shared by the exports of one model id.
        let distinct: BTreeSet<Vec<String>> = lines.iter().map(|l| row_key(l, key)).collect();
        assert_eq!(rows.len(), distinct.len(), "{table}: one row per record");
        assert!(!lines.is_empty(), "{table}: the exports have records");
        for line in lines {
            let row = by_key[&row_key(line, key)];
            for (field, value) in line.as_object().unwrap() {
                assert!(
                    row.get(field).is_some(),
                    "{table}.{field} is no column: Neuronpedia would drop it"
                );
                assert!(
                    same_value(value, &row[field]),
                    "{table}.{field}: exported {value}, stored {}",
                    row[field]
                );
            }
        }
    }
}

/// A table row's key values.
fn row_key(row: &Value, key: &[&str]) -> Vec<String> {
    key.iter()
        .map(|k| row[*k].as_str().unwrap().to_string())
        .collect()
}

/// JSON values equal as PostgreSQL stores them (numbers as doubles).
fn same_value(exported: &Value, stored: &Value) -> bool {
    match (exported, stored) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
        }
        _ => exported == stored,
    }
}

/// Runs `scripts/neuronpedia-import.sh` on an export folder: (table, new rows, rows) for
/// each file it inserted; asserts it warned of no dropped value.
fn import(pg: &LocalPostgres, folder: &Path) -> Vec<(String, u64, u64)> {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/neuronpedia-import.sh"))
        .arg(folder)
        .envs(pg.env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "import failed: {stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results: Vec<(String, u64, u64)> = stdout
        .lines()
        .map(|line| {
            // "Table label: N of M rows new"
            let (what, counts) = line.rsplit_once(": ").unwrap();
            let words: Vec<&str> = counts.split(' ').collect();
            (
                what.to_string(),
                words[0].parse().unwrap(),
                words[2].parse().unwrap(),
            )
        })
        .collect();
    let tables: BTreeSet<&str> = results
        .iter()
        .map(|(what, _, _)| what.split(' ').next().unwrap())
        .collect();
    assert_eq!(tables.len(), 6, "every table imported: {stdout}");
    results
}

/// Each schema against its table in the database: it requires exactly the NOT NULL
/// columns without a default, allows no field that is no column (Prisma refuses one;
/// the batch import drops it), and types each field as its column.
fn check_schemas_against_tables(pg: &LocalPostgres) {
    for (name, table, _) in TABLES {
        let path = repo_root().join(format!("schemas/neuronpedia/{name}.schema.json"));
        let schema: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let columns: Vec<Value> = serde_json::from_str(&pg.sql(&format!(
            "SELECT json_agg(json_build_object('name', column_name, 'type', udt_name, \
             'nullable', is_nullable = 'YES', 'default', column_default IS NOT NULL)) \
             FROM information_schema.columns WHERE table_name = '{table}'"
        )))
        .unwrap();
        let columns: BTreeMap<&str, &Value> = columns
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c))
            .collect();
        let must: BTreeSet<&str> = columns
            .iter()
            .filter(|(_, c)| c["nullable"] == false && c["default"] == false)
            .map(|(name, _)| *name)
            .collect();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(
            required, must,
            "{name}: required = {table}'s NOT NULL columns without a default"
        );
        assert_eq!(schema["additionalProperties"], false, "{name}");
        for (field, spec) in schema["properties"].as_object().unwrap() {
            let column = columns
                .get(field.as_str())
                .unwrap_or_else(|| panic!("{name}.{field} is no column of {table}"));
            check_type(&format!("{name}.{field}"), spec, column);
        }
    }
}

/// A schema property's JSON types fit its column's type and nullability.
fn check_type(what: &str, spec: &Value, column: &Value) {
    let types: Vec<&str> = match &spec["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
        other => panic!("{what}: no type ({other})"),
    };
    if types.contains(&"null") {
        assert_eq!(
            column["nullable"], true,
            "{what} may be null, its column not"
        );
    }
    let base: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    let item = |spec: &Value| {
        spec["items"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let fits = match column["type"].as_str().unwrap() {
        "text" => base == ["string"],
        "int4" => base == ["integer"],
        "float8" => base == ["number"] || base == ["integer"],
        "bool" => base == ["boolean"],
        "Visibility" => {
            base == ["string"]
                && spec["enum"].as_array().is_some_and(|e| {
                    e.iter()
                        .all(|v| ["PUBLIC", "UNLISTED", "PRIVATE"].contains(&v.as_str().unwrap()))
                })
        }
        "_text" => base == ["array"] && item(spec) == "string",
        "_int4" => base == ["array"] && item(spec) == "integer",
        "_float8" => base == ["array"] && ["number", "integer"].contains(&item(spec).as_str()),
        other => panic!("{what}: column type {other} not checked"),
    };
    assert!(fits, "{what}: schema {spec} does not fit column {column}");
}
