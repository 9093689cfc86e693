use std::{fs, path::Path, sync::Arc};

use arrow_array::{
    ArrayRef, BinaryArray, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use parquet::arrow::ArrowWriter;

use super::*;

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn strings(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn spec(paths: &[&Path], policy: BadRecordPolicy) -> CorpusSpec {
    CorpusSpec {
        on_bad_record: policy,
        ..CorpusSpec::new(paths.iter().map(|&path| SourceSpec::new(path)).collect())
    }
}

/// Reads every document, panicking on an error.
fn documents(spec: &CorpusSpec) -> Vec<Document> {
    spec.reader()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// (source, id, text) of every document.
fn triples(spec: &CorpusSpec) -> Vec<(String, String, String)> {
    documents(spec)
        .into_iter()
        .map(|d| (d.source, d.id, d.text))
        .collect()
}

fn triple(source: &str, id: &str, text: &str) -> (String, String, String) {
    (source.into(), id.into(), text.into())
}

/// The error that ends reading, after the documents before it.
fn first_error(spec: &CorpusSpec) -> (usize, CorpusError) {
    let mut read = 0;
    for result in spec.reader().unwrap() {
        match result {
            Ok(_) => read += 1,
            Err(e) => return (read, e),
        }
    }
    panic!("no error after {read} documents");
}

#[test]
fn reads_a_folder_in_sorted_order_with_stable_ids_and_sources() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    write(&root.join("b.txt"), "bee");
    write(&root.join("a/z.md"), "# zed\n");
    write(&root.join("a/y.txt"), "why");
    write(&root.join("a-b.txt"), "dash");
    write(
        &root.join("c.jsonl"),
        "{\"id\": \"first\", \"text\": \"c one\"}\n{\"text\": \"c two\"}\n",
    );
    write_parquet(
        &root.join("data/train-00000-of-00001.parquet"),
        vec![
            ("id", strings(&["p0", "p1"])),
            ("text", strings(&["row zero", "row one"])),
        ],
    );
    // Skipped: hidden files and folders, and unknown extensions.
    write(&root.join(".hidden.txt"), "no");
    write(&root.join(".git/HEAD.txt"), "no");
    write(&root.join("notes.csv"), "no");
    let single = dir.path().join("elsewhere/extra.txt");
    write(&single, "extra");

    let spec = spec(&[&root, &single], BadRecordPolicy::Stop);
    let expected = vec![
        triple("a/y.txt", "a/y.txt", "why"),
        triple("a/z.md", "a/z.md", "# zed\n"),
        triple("a-b.txt", "a-b.txt", "dash"),
        triple("b.txt", "b.txt", "bee"),
        triple("c.jsonl", "first", "c one"),
        triple("c.jsonl", "c.jsonl:2", "c two"),
        triple("data/train-00000-of-00001.parquet", "p0", "row zero"),
        triple("data/train-00000-of-00001.parquet", "p1", "row one"),
        triple("extra.txt", "extra.txt", "extra"),
    ];
    assert_eq!(triples(&spec), expected);
    // Same spec, same files: same documents in the same order.
    assert_eq!(triples(&spec), expected);

    let files = spec.files().unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|f| (f.name.as_str(), f.source, f.format))
        .collect();
    assert_eq!(
        names,
        [
            ("a/y.txt", 0, SourceFormat::Text),
            ("a/z.md", 0, SourceFormat::Text),
            ("a-b.txt", 0, SourceFormat::Text),
            ("b.txt", 0, SourceFormat::Text),
            ("c.jsonl", 0, SourceFormat::Jsonl),
            (
                "data/train-00000-of-00001.parquet",
                0,
                SourceFormat::Parquet
            ),
            ("extra.txt", 1, SourceFormat::Text),
        ]
    );
    for file in &files {
        let contents = fs::read(&file.path).unwrap();
        assert_eq!(file.bytes, contents.len() as u64);
        assert_eq!(file.sha256, format!("{:x}", Sha256::digest(&contents)));
    }
    // sha256("why"), as `printf why | sha256sum` prints it.
    assert_eq!(
        files[0].sha256,
        "2be23c585f15e5fd3279d0663036dd9f6e634f4225ef326fc83fb874dbb81a0f"
    );
}

#[test]
fn an_explicit_format_restricts_a_folder_walk() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("README.md"), "dataset card");
    write_parquet(
        &dir.path().join("data/train.parquet"),
        vec![("text", strings(&["only"]))],
    );
    let mut spec = spec(&[dir.path()], BadRecordPolicy::Stop);
    spec.sources[0].format = Some(SourceFormat::Parquet);
    assert_eq!(
        triples(&spec),
        [triple("data/train.parquet", "data/train.parquet:0", "only")]
    );
}

#[test]
fn a_spec_reads_from_toml_with_defaults() {
    let spec: CorpusSpec = toml::from_str(
        "on_bad_record = \"skip\"\n\
         [[sources]]\npath = \"a.jsonl\"\n\
         [[sources]]\npath = \"data\"\nformat = \"parquet\"\ntext_field = \"content\"\n",
    )
    .unwrap();
    assert_eq!(spec.on_bad_record, BadRecordPolicy::Skip);
    assert_eq!(spec.max_document_bytes, DEFAULT_MAX_DOCUMENT_BYTES);
    assert_eq!(spec.sources[0], SourceSpec::new("a.jsonl"));
    assert_eq!(spec.sources[1].format, Some(SourceFormat::Parquet));
    assert_eq!(spec.sources[1].text_field, "content");
    assert_eq!(spec.sources[1].id_field, "id");
    let again: CorpusSpec = toml::from_str(&toml::to_string(&spec).unwrap()).unwrap();
    assert_eq!(again, spec);
    let typo = toml::from_str::<CorpusSpec>("[[sources]]\npath = \"a\"\ntext_feild = \"x\"\n");
    assert!(typo.is_err());
    let relative = spec.relative_to(Path::new("/jobs"));
    assert_eq!(relative.sources[0].path, Path::new("/jobs/a.jsonl"));
}

#[test]
fn parquet_ids_come_from_an_integer_column_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.parquet");
    let rows = 150;
    let texts: Vec<String> = (0..rows).map(|i| format!("text {i}")).collect();
    let ids: Vec<Option<i64>> = (0..rows)
        .map(|i| (i != 100).then_some(1000 + i as i64))
        .collect();
    write_parquet(
        &path,
        vec![
            ("other", strings(&vec!["x"; rows])),
            ("text", Arc::new(StringArray::from(texts.clone()))),
            ("id", Arc::new(Int64Array::from(ids))),
        ],
    );
    let docs = documents(&spec(&[&path], BadRecordPolicy::Stop));
    assert_eq!(docs.len(), rows);
    for (i, doc) in docs.iter().enumerate() {
        let id = if i == 100 {
            "rows.parquet:100".to_string()
        } else {
            (1000 + i).to_string()
        };
        assert_eq!(
            (doc.id.as_str(), doc.text.as_str()),
            (id.as_str(), texts[i].as_str())
        );
        assert_eq!(doc.source, "rows.parquet");
    }
}

#[test]
fn parquet_without_an_id_column_uses_row_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.parquet");
    write_parquet(&path, vec![("text", strings(&["a", "b"]))]);
    assert_eq!(
        triples(&spec(&[&path], BadRecordPolicy::Stop)),
        [
            triple("rows.parquet", "rows.parquet:0", "a"),
            triple("rows.parquet", "rows.parquet:1", "b"),
        ]
    );
}

#[test]
fn a_missing_text_column_names_the_file_and_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.parquet");
    write_parquet(
        &path,
        vec![("content", strings(&["a"])), ("url", strings(&["u"]))],
    );
    for policy in [BadRecordPolicy::Stop, BadRecordPolicy::Skip] {
        let (read, error) = first_error(&spec(&[&path], policy));
        assert_eq!(read, 0);
        let CorpusError::MissingColumn {
            path: error_path,
            column,
            columns,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!((error_path, column.as_str()), (&path, "text"));
        assert_eq!(columns, &["content", "url"]);
        let message = error.to_string();
        assert!(
            message.contains("rows.parquet") && message.contains("content, url"),
            "{message}"
        );
    }
    let mut spec = spec(&[&path], BadRecordPolicy::Stop);
    spec.sources[0].text_field = "content".into();
    assert_eq!(
        triples(&spec),
        [triple("rows.parquet", "rows.parquet:0", "a")]
    );
}

#[test]
fn parquet_text_may_be_large_utf8_a_view_or_checked_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let large = dir.path().join("large.parquet");
    write_parquet(
        &large,
        vec![
            ("id", strings(&["l0", "l1"])),
            (
                "text",
                Arc::new(LargeStringArray::from(vec!["big", "bigger"])),
            ),
        ],
    );
    let view = dir.path().join("view.parquet");
    write_parquet(
        &view,
        vec![(
            "text",
            Arc::new(StringViewArray::from(vec![
                "a string long enough not to be inlined",
                "v",
            ])),
        )],
    );
    let binary = dir.path().join("binary.parquet");
    write_parquet(
        &binary,
        vec![(
            "text",
            Arc::new(BinaryArray::from(vec![b"bytes".as_ref(), b"bad \xff"])),
        )],
    );
    let spec = spec(&[&large, &view, &binary], BadRecordPolicy::Skip);
    let mut reader = spec.reader().unwrap();
    let read: Vec<_> = reader
        .by_ref()
        .map(|d| {
            let d = d.unwrap();
            (d.id, d.text)
        })
        .collect();
    assert_eq!(
        read,
        [
            ("l0".into(), "big".into()),
            ("l1".into(), "bigger".into()),
            (
                "view.parquet:0".into(),
                "a string long enough not to be inlined".into()
            ),
            ("view.parquet:1".into(), "v".into()),
            ("binary.parquet:0".into(), "bytes".into()),
        ]
    );
    let skipped = reader.skipped();
    assert_eq!(skipped.count, 1);
    assert_eq!(skipped.first[0].location, RecordLocation::Row(1));
    assert!(skipped.first[0].reason.contains("invalid UTF-8"));
}

#[test]
fn null_parquet_text_is_a_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.parquet");
    write_parquet(
        &path,
        vec![(
            "text",
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
        )],
    );
    let (read, error) = first_error(&spec(&[&path], BadRecordPolicy::Stop));
    assert_eq!(read, 1);
    let message = error.to_string();
    assert!(
        message.contains("rows.parquet, row 1") && message.contains("null"),
        "{message}"
    );

    let spec = spec(&[&path], BadRecordPolicy::Skip);
    let mut reader = spec.reader().unwrap();
    let ids: Vec<_> = reader.by_ref().map(|d| d.unwrap().id).collect();
    assert_eq!(ids, ["rows.parquet:0", "rows.parquet:2"]);
    assert_eq!(reader.skipped().count, 1);
    assert_eq!(
        reader.skipped().first[0],
        BadRecord {
            path: path.clone(),
            source: "rows.parquet".into(),
            location: RecordLocation::Row(1),
            reason: "\"text\" is null".into(),
        }
    );
}

#[test]
fn invalid_utf8_stops_or_is_skipped_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    write(
        &root.join("a.jsonl"),
        b"{\"text\": \"ok\"}\n{\"text\": \"bad \xff\"}\n{\"text\": \"after\"}\n",
    );
    write(
        &root.join("b.txt"),
        b"line one\nline two\nthree \xc3( here\n",
    );
    write(&root.join("c.txt"), "fine");

    let (read, error) = first_error(&spec(&[&root], BadRecordPolicy::Stop));
    assert_eq!(read, 1);
    let message = error.to_string();
    assert!(
        message.contains("a.jsonl, line 2") && message.contains("invalid UTF-8 at byte 15"),
        "{message}"
    );
    // Reading ends after the error.
    let mut reader = spec(&[&root], BadRecordPolicy::Stop).reader().unwrap();
    assert!(reader.by_ref().any(|d| d.is_err()));
    assert!(reader.next().is_none());

    let (_, error) = first_error(&spec(&[&root.join("b.txt")], BadRecordPolicy::Stop));
    let message = error.to_string();
    assert!(
        message.contains("b.txt, line 3") && message.contains("byte 7"),
        "{message}"
    );

    let spec = spec(&[&root], BadRecordPolicy::Skip);
    let mut reader = spec.reader().unwrap();
    let ids: Vec<_> = reader.by_ref().map(|d| d.unwrap().id).collect();
    assert_eq!(ids, ["a.jsonl:1", "a.jsonl:3", "c.txt"]);
    let skipped = reader.skipped();
    assert_eq!(skipped.count, 2);
    let places: Vec<_> = skipped
        .first
        .iter()
        .map(|bad| (bad.source.as_str(), bad.location))
        .collect();
    assert_eq!(
        places,
        [
            ("a.jsonl", RecordLocation::Line(2)),
            ("b.txt", RecordLocation::Line(3))
        ]
    );
}

#[test]
fn skip_counts_every_bad_record_and_keeps_the_first_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let mut lines = String::new();
    for i in 0..150 {
        lines.push_str(&format!("{{\"title\": \"{i}\"}}\nnot json {i}\n"));
    }
    lines.push_str("{\"text\": \"the one\"}\n");
    write(&path, lines);
    let spec = spec(&[&path], BadRecordPolicy::Skip);
    let mut reader = spec.reader().unwrap();
    let docs: Vec<_> = reader.by_ref().map(|d| d.unwrap().text).collect();
    assert_eq!(docs, ["the one"]);
    let skipped = reader.skipped();
    assert_eq!(skipped.count, 300);
    assert_eq!(skipped.first.len(), MAX_KEPT_BAD_RECORDS);
    assert!(
        skipped.first[0]
            .reason
            .contains("no field \"text\" (fields: \"title\")")
    );
    assert!(skipped.first[1].reason.contains("not valid JSON"));
    assert_eq!(skipped.first[99].location, RecordLocation::Line(100));
}

#[test]
fn empty_documents_are_documents() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    write(&root.join("a.txt"), "");
    write(
        &root.join("b.jsonl"),
        "{\"text\": \"\", \"id\": 3}\n\n   \n",
    );
    write_parquet(&root.join("c.parquet"), vec![("text", strings(&[""]))]);
    assert_eq!(
        triples(&spec(&[&root], BadRecordPolicy::Stop)),
        [
            triple("a.txt", "a.txt", ""),
            triple("b.jsonl", "3", ""),
            triple("c.parquet", "c.parquet:0", ""),
        ]
    );
}

#[test]
fn documents_over_the_size_limit_are_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    write(&root.join("a.txt"), "0123456789");
    write(&root.join("b.txt"), "01234");
    write(
        &root.join("c.jsonl"),
        format!(
            "{{\"text\": \"0123456789\"}}\n{{\"text\": \"ok\"}}\n{{\"text\": \"{}\"}}\n",
            "x".repeat(40)
        ),
    );
    write_parquet(
        &root.join("d.parquet"),
        vec![("text", strings(&["fits", "0123456789"]))],
    );
    let mut spec = spec(&[&root], BadRecordPolicy::Skip);
    spec.max_document_bytes = 8;
    let mut reader = spec.reader().unwrap();
    let texts: Vec<_> = reader.by_ref().map(|d| d.unwrap().text).collect();
    assert_eq!(texts, ["01234", "ok", "fits"]);
    let places: Vec<_> = reader
        .skipped()
        .first
        .iter()
        .map(|bad| (bad.source.as_str(), bad.location))
        .collect();
    assert_eq!(
        places,
        [
            ("a.txt", RecordLocation::File),
            ("c.jsonl", RecordLocation::Line(1)),
            ("c.jsonl", RecordLocation::Line(3)),
            ("d.parquet", RecordLocation::Row(1)),
        ]
    );
    let reasons: Vec<_> = reader
        .skipped()
        .first
        .iter()
        .map(|bad| bad.reason.as_str())
        .collect();
    assert!(
        reasons[0].contains("10 bytes, over max_document_bytes (8)"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("over 4 × max_document_bytes (32)"),
        "{reasons:?}"
    );

    spec.on_bad_record = BadRecordPolicy::Stop;
    let (read, error) = first_error(&spec);
    assert_eq!(read, 0);
    assert!(matches!(error, CorpusError::BadRecord(_)));
    assert!(
        error
            .to_string()
            .contains("a.txt: the document is 10 bytes"),
        "{error}"
    );
}

#[test]
fn unusable_sources_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let message = |spec: &CorpusSpec| {
        let files = spec.files().unwrap_err().to_string();
        let reader = spec.reader().err().unwrap().to_string();
        assert_eq!(files, reader);
        files
    };

    let missing = dir.path().join("missing.jsonl");
    let text = message(&spec(&[&missing], BadRecordPolicy::Stop));
    assert!(
        text.contains("missing.jsonl") && text.contains("no such file"),
        "{text}"
    );

    let csv = dir.path().join("table.csv");
    write(&csv, "a,b\n");
    let text = message(&spec(&[&csv], BadRecordPolicy::Stop));
    assert!(
        text.contains("table.csv") && text.contains("set format"),
        "{text}"
    );
    let mut as_text = spec(&[&csv], BadRecordPolicy::Stop);
    as_text.sources[0].format = Some(SourceFormat::Text);
    assert_eq!(
        triples(&as_text),
        [triple("table.csv", "table.csv", "a,b\n")]
    );

    let empty = dir.path().join("empty");
    write(&empty.join(".hidden.txt"), "x");
    write(&empty.join("table.csv"), "x");
    let text = message(&spec(&[&empty], BadRecordPolicy::Stop));
    assert!(
        text.contains("holds no .txt, .md, .jsonl, .json, .parquet files"),
        "{text}"
    );

    let text = message(&CorpusSpec::new(Vec::new()));
    assert!(text.contains("no sources"), "{text}");

    let not_parquet = dir.path().join("broken.parquet");
    write(&not_parquet, "not parquet");
    let (_, error) = first_error(&spec(&[&not_parquet], BadRecordPolicy::Skip));
    assert!(
        error
            .to_string()
            .contains("broken.parquet: not a readable Parquet file"),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn a_link_loop_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    write(&root.join("a.txt"), "a");
    std::os::unix::fs::symlink(&root, root.join("loop")).unwrap();
    let error = spec(&[&root], BadRecordPolicy::Stop).files().unwrap_err();
    assert!(error.to_string().contains("loop"), "{error}");
}

fn with_metadata(spec: CorpusSpec, fields: &[(&str, Option<MetadataType>)]) -> CorpusSpec {
    CorpusSpec {
        metadata: fields
            .iter()
            .map(|(field, kind)| MetadataSpec {
                field: (*field).into(),
                kind: *kind,
            })
            .collect(),
        ..spec
    }
}

use saeidx_format::metadata::MetadataType;

#[test]
fn jsonl_and_parquet_records_carry_typed_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    write(
        &root.join("a.jsonl"),
        "{\"text\": \"one\", \"year\": 1901, \"party\": \"Whig\"}\n\
         {\"text\": \"two\", \"year\": null}\n",
    );
    write_parquet(
        &root.join("b.parquet"),
        vec![
            ("text", strings(&["three"])),
            (
                "year",
                Arc::new(arrow_array::Int32Array::from(vec![1950])) as ArrayRef,
            ),
        ],
    );
    write(&root.join("c.txt"), "four");
    let spec = with_metadata(
        spec(&[&root], BadRecordPolicy::Stop),
        &[
            ("year", Some(MetadataType::Integer)),
            ("party", Some(MetadataType::String)),
        ],
    );
    let metadata: Vec<Vec<MetadataValue>> =
        documents(&spec).into_iter().map(|d| d.metadata).collect();
    let party = |p: &str| MetadataValue::String(p.into());
    assert_eq!(
        metadata,
        [
            vec![MetadataValue::Integer(1901), party("Whig")],
            vec![MetadataValue::Null, MetadataValue::Null],
            vec![MetadataValue::Integer(1950), MetadataValue::Null],
            vec![MetadataValue::Null, MetadataValue::Null],
        ]
    );
}

#[test]
fn a_value_of_the_wrong_type_is_a_bad_record_naming_document_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    write(
        &path,
        "{\"id\": \"x\", \"text\": \"one\", \"year\": 1901}\n\
         {\"id\": \"y\", \"text\": \"two\", \"year\": \"MCMI\"}\n\
         {\"id\": \"z\", \"text\": \"three\", \"year\": 1903}\n",
    );
    let declared = |policy| {
        with_metadata(
            spec(&[&path], policy),
            &[("year", Some(MetadataType::Integer))],
        )
    };
    let (read, error) = first_error(&declared(BadRecordPolicy::Stop));
    assert_eq!(read, 1);
    let message = error.to_string();
    assert!(
        message.contains("line 2")
            && message.contains("document \"y\"")
            && message.contains("metadata field \"year\"")
            && message.contains("is a string (\"MCMI\"), but the job declares it integer"),
        "{message}"
    );
    let spec = declared(BadRecordPolicy::Skip);
    let mut reader = spec.reader().unwrap();
    let ids: Vec<String> = reader.by_ref().map(|d| d.unwrap().id).collect();
    assert_eq!(ids, ["x", "z"]);
    assert_eq!(reader.skipped().count, 1);
}

#[test]
fn types_left_out_are_inferred_from_the_whole_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    write(
        &root.join("a.jsonl"),
        "{\"text\": \"one\", \"n\": 1, \"x\": 1, \"flag\": true, \"when\": \"2020-01-01\", \"none\": null}\n\
         {\"text\": \"two\", \"n\": 2, \"x\": 2.5}\n",
    );
    write_parquet(
        &root.join("b.parquet"),
        vec![
            ("text", strings(&["three"])),
            ("n", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
        ],
    );
    let fields = ["n", "x", "flag", "when", "none"];
    let inferred: Vec<(&str, Option<MetadataType>)> =
        fields.iter().map(|field| (*field, None)).collect();
    let mut spec = with_metadata(spec(&[&root], BadRecordPolicy::Stop), &inferred);
    let columns = spec.metadata_columns().unwrap();
    let kinds: Vec<MetadataType> = columns.iter().map(|c| c.kind).collect();
    use MetadataType::*;
    // Strings are never guessed to be timestamps; all-null fields are strings.
    assert_eq!(kinds, [Integer, Float, Bool, String, String]);
    spec.resolve_metadata().unwrap();
    assert_eq!(spec.declared_columns(), Some(columns));
    assert_eq!(
        documents(&spec)[1].metadata[..2],
        [MetadataValue::Integer(2), MetadataValue::Float(2.5)]
    );

    let misspelt = with_metadata(spec.clone(), &[("yeer", None)]);
    let message = misspelt.metadata_columns().unwrap_err().to_string();
    assert!(
        message.contains("no record of the corpus has a field \"yeer\""),
        "{message}"
    );
    write(
        &root.join("c.jsonl"),
        "{\"text\": \"four\", \"n\": \"four\"}\n",
    );
    let mixed = with_metadata(spec.clone(), &[("n", None)]);
    let message = mixed.metadata_columns().unwrap_err().to_string();
    assert!(
        message.contains("field \"n\" holds integer values")
            && message.contains("declare its type"),
        "{message}"
    );
    let reserved = with_metadata(spec, &[("text", Some(String))]);
    let message = reserved.reader().err().unwrap().to_string();
    assert!(message.contains("fixed column"), "{message}");
}

#[test]
fn a_parquet_column_of_another_type_is_refused_when_the_file_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    write_parquet(
        &path,
        vec![("text", strings(&["one"])), ("year", strings(&["1901"]))],
    );
    let spec = with_metadata(
        spec(&[&path], BadRecordPolicy::Skip),
        &[("year", Some(MetadataType::Integer))],
    );
    let (_, error) = first_error(&spec);
    let message = error.to_string();
    assert!(
        message.contains("\"year\" holds Utf8") && message.contains("declare its type as string"),
        "{message}"
    );
}
