//! Random document metadata and random filters, with a plain brute-force evaluation of
//! each filter (SQL's three-valued logic, written out case by case), for the property
//! tests of the query layer's filter language against that evaluation and DuckDB.
//!
//! Values come from small domains so that equalities, `in` lists and nulls hit often;
//! strings include a quote, an empty string and case differences.

use rand::{RngExt, rngs::StdRng};
use saeidx_format::{
    metadata::{MetadataColumn, MetadataType, MetadataValue, parse_timestamp},
    tables::DocumentRows,
};

/// The metadata columns of [`random_documents`]: one of each type, one with a name that
/// needs quotes.
pub fn random_columns() -> Vec<MetadataColumn> {
    vec![
        MetadataColumn::new("year", MetadataType::Integer),
        MetadataColumn::new("share", MetadataType::Float),
        MetadataColumn::new("party", MetadataType::String),
        MetadataColumn::new("flag", MetadataType::Bool),
        MetadataColumn::new("delivered", MetadataType::Timestamp),
        MetadataColumn::new("first name", MetadataType::String),
    ]
}

const INTEGERS: [i64; 7] = [-3, -1, 0, 1, 2, 3, 1900];
const FLOATS: [f64; 7] = [-1.5, -1.0, 0.0, 0.5, 1.0, 2.5, 1900.0];
const STRINGS: [&str; 7] = ["", "a", "b", "ab", "B", "it's", "Démocrate"];
const TIMES: [&str; 4] = [
    "1901-12-03",
    "1901-12-03 12:00:00",
    "2000-01-01",
    "2024-05-01 08:30:00",
];

fn random_value(rng: &mut StdRng, kind: MetadataType) -> MetadataValue {
    if rng.random_range(0..5) == 0 {
        return MetadataValue::Null;
    }
    match kind {
        MetadataType::Integer => MetadataValue::Integer(INTEGERS[rng.random_range(0..7)]),
        MetadataType::Float => MetadataValue::Float(FLOATS[rng.random_range(0..7)]),
        MetadataType::String => MetadataValue::String(STRINGS[rng.random_range(0..7)].into()),
        MetadataType::Bool => MetadataValue::Bool(rng.random_range(0..2) == 1),
        MetadataType::Timestamp => {
            MetadataValue::Timestamp(parse_timestamp(TIMES[rng.random_range(0..4)]).unwrap_or(0))
        }
    }
}

/// One document's random values in [`random_columns`] (about one in five null).
pub fn random_metadata(rng: &mut StdRng) -> Vec<MetadataValue> {
    random_columns()
        .iter()
        .map(|column| random_value(rng, column.kind))
        .collect()
}

/// `documents` documents (numbered from 0) with random metadata in [`random_columns`],
/// as the `documents/` table's rows.
pub fn random_documents(rng: &mut StdRng, documents: usize) -> DocumentRows {
    let mut rows = DocumentRows::default();
    for doc in 0..documents {
        rows.doc.push(doc as u32);
        rows.id.push(format!("doc-{doc}"));
        rows.source.push(format!("file-{}.jsonl", doc % 3));
        rows.text.push(format!("text {doc}"));
        rows.tokens.push(rng.random_range(0..5));
        rows.push_metadata(random_metadata(rng));
    }
    rows
}

/// A value in a random filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number written as an integer.
    Integer(i64),
    /// A number written with a fraction.
    Float(f64),
    /// A string (also a timestamp column's time).
    String(String),
    /// `true` / `false`.
    Bool(bool),
}

impl Literal {
    fn render(&self) -> String {
        match self {
            Self::Integer(value) => value.to_string(),
            Self::Float(value) => format!("{value:?}"),
            Self::String(text) => format!("'{}'", text.replace('\'', "''")),
            Self::Bool(value) => value.to_string(),
        }
    }
}

/// A random filter, as a tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `column op literal`.
    Compare {
        /// The column's name.
        column: String,
        /// `=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`.
        op: &'static str,
        /// The value.
        value: Literal,
    },
    /// `column [not] in (...)`.
    In {
        /// The column's name.
        column: String,
        /// The values.
        values: Vec<Literal>,
        /// `not in`.
        negated: bool,
    },
    /// `column is [not] null`.
    IsNull {
        /// The column's name.
        column: String,
        /// `is not null`.
        negated: bool,
    },
    /// `(a and b)`.
    And(Box<Predicate>, Box<Predicate>),
    /// `(a or b)`.
    Or(Box<Predicate>, Box<Predicate>),
    /// `not (a)`.
    Not(Box<Predicate>),
}

/// Every column a filter over [`random_documents`] may use: the fixed ones and the
/// metadata.
pub fn filterable_columns() -> Vec<MetadataColumn> {
    let mut columns = vec![
        MetadataColumn::new("doc", MetadataType::Integer),
        MetadataColumn::new("id", MetadataType::String),
        MetadataColumn::new("source", MetadataType::String),
        MetadataColumn::new("tokens", MetadataType::Integer),
    ];
    columns.extend(random_columns());
    columns
}

fn random_literal(rng: &mut StdRng, kind: MetadataType) -> Literal {
    match kind {
        MetadataType::Integer | MetadataType::Float => {
            if rng.random_range(0..2) == 0 {
                Literal::Integer(INTEGERS[rng.random_range(0..7)])
            } else {
                Literal::Float(FLOATS[rng.random_range(0..7)])
            }
        }
        MetadataType::String => {
            let pool = [STRINGS.as_slice(), &["doc-1", "doc-10", "file-0.jsonl"]].concat();
            Literal::String(pool[rng.random_range(0..pool.len())].into())
        }
        MetadataType::Bool => Literal::Bool(rng.random_range(0..2) == 1),
        MetadataType::Timestamp => Literal::String(TIMES[rng.random_range(0..4)].into()),
    }
}

/// A random filter over [`filterable_columns`], at most `depth` levels deep.
pub fn random_predicate(rng: &mut StdRng, depth: usize) -> Predicate {
    let choice = if depth == 0 {
        rng.random_range(0..3)
    } else {
        rng.random_range(0..6)
    };
    let columns = filterable_columns();
    let column = &columns[rng.random_range(0..columns.len())];
    let name = column.name.clone();
    match choice {
        0 => {
            const OPS: [&str; 7] = ["=", "!=", "<>", "<", "<=", ">", ">="];
            Predicate::Compare {
                column: name,
                op: OPS[rng.random_range(0..OPS.len())],
                value: random_literal(rng, column.kind),
            }
        }
        1 => Predicate::In {
            column: name,
            values: (0..rng.random_range(1..4))
                .map(|_| random_literal(rng, column.kind))
                .collect(),
            negated: rng.random_range(0..2) == 1,
        },
        2 => Predicate::IsNull {
            column: name,
            negated: rng.random_range(0..2) == 1,
        },
        3 => Predicate::And(
            Box::new(random_predicate(rng, depth - 1)),
            Box::new(random_predicate(rng, depth - 1)),
        ),
        4 => Predicate::Or(
            Box::new(random_predicate(rng, depth - 1)),
            Box::new(random_predicate(rng, depth - 1)),
        ),
        _ => Predicate::Not(Box::new(random_predicate(rng, depth - 1))),
    }
}

fn quote_column(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_string()
    } else {
        format!("\"{name}\"")
    }
}

impl Predicate {
    /// The filter's text: the same in saeidx's filter language and in DuckDB's SQL.
    pub fn render(&self) -> String {
        match self {
            Self::Compare { column, op, value } => {
                format!("{} {op} {}", quote_column(column), value.render())
            }
            Self::In {
                column,
                values,
                negated,
            } => format!(
                "{} {}in ({})",
                quote_column(column),
                if *negated { "not " } else { "" },
                values
                    .iter()
                    .map(Literal::render)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::IsNull { column, negated } => format!(
                "{} is {}null",
                quote_column(column),
                if *negated { "not " } else { "" }
            ),
            Self::And(a, b) => format!("({} and {})", a.render(), b.render()),
            Self::Or(a, b) => format!("({} or {})", a.render(), b.render()),
            Self::Not(a) => format!("not ({})", a.render()),
        }
    }

    /// The documents of `rows` the filter selects, by brute force.
    pub fn select(&self, rows: &DocumentRows) -> Vec<u32> {
        (0..rows.doc.len())
            .filter(|&row| self.eval(rows, row) == Some(true))
            .map(|row| rows.doc[row])
            .collect()
    }

    /// The filter's value on one row: `None` is SQL's unknown.
    pub fn eval(&self, rows: &DocumentRows, row: usize) -> Option<bool> {
        match self {
            Self::And(a, b) => {
                let (a, b) = (a.eval(rows, row), b.eval(rows, row));
                if a == Some(false) || b == Some(false) {
                    Some(false)
                } else if a == Some(true) && b == Some(true) {
                    Some(true)
                } else {
                    None
                }
            }
            Self::Or(a, b) => {
                let (a, b) = (a.eval(rows, row), b.eval(rows, row));
                if a == Some(true) || b == Some(true) {
                    Some(true)
                } else if a == Some(false) && b == Some(false) {
                    Some(false)
                } else {
                    None
                }
            }
            Self::Not(a) => a.eval(rows, row).map(|value| !value),
            Self::IsNull { column, negated } => {
                Some((cell(rows, column, row) == MetadataValue::Null) != *negated)
            }
            Self::Compare { column, op, value } => {
                let ordering = ordering(&cell(rows, column, row), value)?;
                Some(match *op {
                    "=" => ordering.is_eq(),
                    "!=" | "<>" => ordering.is_ne(),
                    "<" => ordering.is_lt(),
                    "<=" => ordering.is_le(),
                    ">" => ordering.is_gt(),
                    _ => ordering.is_ge(),
                })
            }
            Self::In {
                column,
                values,
                negated,
            } => {
                let found = cell(rows, column, row);
                let mut any = false;
                for value in values {
                    any |= ordering(&found, value)?.is_eq();
                }
                Some(any != *negated)
            }
        }
    }
}

/// A row's value in a column, fixed or metadata.
fn cell(rows: &DocumentRows, column: &str, row: usize) -> MetadataValue {
    match column {
        "doc" => MetadataValue::Integer(i64::from(rows.doc[row])),
        "id" => MetadataValue::String(rows.id[row].clone()),
        "source" => MetadataValue::String(rows.source[row].clone()),
        "tokens" => MetadataValue::Integer(i64::from(rows.tokens[row])),
        name => {
            let index = random_columns()
                .iter()
                .position(|c| c.name == name)
                .expect("a random filter names a known column");
            rows.metadata[index][row].clone()
        }
    }
}

/// How a value compares with a literal; `None` when the value is null.
fn ordering(value: &MetadataValue, literal: &Literal) -> Option<std::cmp::Ordering> {
    let as_f64 = |literal: &Literal| match literal {
        Literal::Integer(v) => *v as f64,
        Literal::Float(v) => *v,
        _ => f64::NAN,
    };
    match (value, literal) {
        (MetadataValue::Null, _) => None,
        (MetadataValue::Integer(a), Literal::Integer(b)) => Some(a.cmp(b)),
        (MetadataValue::Integer(a), other) => (*a as f64).partial_cmp(&as_f64(other)),
        (MetadataValue::Float(a), other) => a.partial_cmp(&as_f64(other)),
        (MetadataValue::String(a), Literal::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (MetadataValue::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (MetadataValue::Timestamp(a), Literal::String(b)) => {
            Some(a.cmp(&parse_timestamp(b).expect("random times parse")))
        }
        _ => panic!("a random filter compares {value:?} with {literal:?}"),
    }
}
