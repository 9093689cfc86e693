//! Filters: a small predicate language over a documents table's columns, which selects
//! documents by their metadata.
//!
//! ```text
//! year >= 1900 and party = 'Democratic'
//! party in ('Whig', 'Federalist') or not (year < 1850)
//! president is not null and id not in ('1790_george_washington_n')
//! ```
//!
//! | form | meaning |
//! |---|---|
//! | `column op value` | `op` is `=`, `!=` (or `<>`), `<`, `<=`, `>`, `>=` |
//! | `column [not] in (v1, v2, ...)` | equal to one of the values (or to none) |
//! | `column is [not] null` | the value is missing (or present) |
//! | `a and b`, `a or b`, `not a`, `( ... )` | `not` binds tightest, then `and`, then `or` |
//!
//! Columns are the documents table's `doc` and `tokens` (integers), `id` and `source`
//! (strings), and the metadata columns the index declares (see
//! `saeidx_format::metadata`); a name that is not a plain identifier, or that is a
//! keyword, is written in double quotes (`"first name"`). Values are strings in single
//! quotes (`'it''s'` for a quote), numbers (`1900`, `-2.5`, `1e3`) and `true`/`false`.
//! Keywords are case-insensitive.
//!
//! **Types.** Each comparison is checked against its column's type when the filter is
//! parsed: string columns take strings; integer and float columns take numbers (compared
//! as numbers, so `year > 1900.5` works); bool columns take `true`/`false`; timestamp
//! columns take a quoted time (`'1901-12-03'`, `'2024-05-01T12:00:00Z'`). Anything else
//! is an error pointing at the value. Strings compare byte-wise (as DuckDB's default
//! collation does).
//!
//! **Nulls** follow SQL's three-valued logic: a comparison or `in` with a null value is
//! *unknown*, `not unknown` is unknown, `false and unknown` is false, `true or unknown`
//! is true, and a document is selected only when the whole filter is *true*. So neither
//! `year > 1900` nor `not (year > 1900)` selects a document without a year; ask for those
//! with `year is null`. Comparing with `null` (`year = null`) is refused: it is never
//! true, and `is null` is what is meant. Exactly these rules make a filter's answer equal
//! to DuckDB's `SELECT doc FROM read_parquet('documents/*.parquet') WHERE <filter>` (the
//! property tests check it).
//!
//! The parser is a hand-written recursive descent (~450 formatted lines with the
//! tokenizer): the grammar is six rules,
//! and a hand-written parser gives the errors this language promises — the character
//! offset, a caret under it, what was expected there and the columns with their types —
//! without a generated parser's token names, and without a dependency. (A SQL parser
//! crate such as `sqlparser` would accept a far larger language and then need the same
//! checks to refuse most of it.)

use std::{cmp::Ordering, fmt};

use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use saeidx_format::metadata::{MetadataColumn, MetadataType, TIMESTAMP_FORMS, parse_timestamp};

/// The longest filter accepted, in characters.
pub const MAX_FILTER_CHARS: usize = 10_000;

/// The deepest nesting of parentheses and `not`s accepted.
pub const MAX_FILTER_DEPTH: usize = 64;

/// What a filter may say, for error messages.
pub const FILTER_FORMS: &str = "comparisons `column op value` (op: = != < <= > >=), \
     `column in (v1, v2)`, `column not in (...)`, `column is null`, `column is not null`, \
     combined with and, or, not and parentheses; values are 'strings' in single quotes, \
     numbers and true/false";

/// The columns every documents table has, usable in every filter: `doc`, `id`, `source`,
/// `tokens` (the text is not filterable).
pub fn fixed_filter_columns() -> Vec<MetadataColumn> {
    vec![
        MetadataColumn::new("doc", MetadataType::Integer),
        MetadataColumn::new("id", MetadataType::String),
        MetadataColumn::new("source", MetadataType::String),
        MetadataColumn::new("tokens", MetadataType::Integer),
    ]
}

/// The columns a filter over an index with the metadata columns `metadata` may use: the
/// fixed ones ([`fixed_filter_columns`]), then the metadata.
pub fn filter_columns(metadata: &[MetadataColumn]) -> Vec<MetadataColumn> {
    let mut columns = fixed_filter_columns();
    columns.extend(metadata.iter().cloned());
    columns
}

/// A filter that cannot be parsed or used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// The text is not a filter, or does not fit the columns' types.
    #[error("{}", render_invalid(text, *offset, message, columns))]
    Invalid {
        /// The filter as given.
        text: String,
        /// Where the problem is, in characters from the start (0-based).
        offset: usize,
        /// What is wrong there, and what would be right.
        message: String,
        /// The columns the filter may use, as `name (type)`.
        columns: String,
    },
    /// The table a filter was evaluated over lacks a column it uses, or holds it in
    /// another type than the filter was checked against.
    #[error(
        "the documents table's column {column:?} {reason}; the filter was checked against \
         another index's columns"
    )]
    Table {
        /// The column.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn render_invalid(text: &str, offset: usize, message: &str, columns: &str) -> String {
    let shown: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!(
        "invalid filter at character {}: {message}\n  {shown}\n  {}^\nallowed: {FILTER_FORMS}; \
         columns: {columns}",
        offset + 1,
        " ".repeat(offset)
    )
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
        }
    }
}

/// A value in a filter, already in its column's domain.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
}

/// A parsed, type-checked filter expression; `column` indexes the filter's columns.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        column: usize,
        op: Op,
        value: Value,
    },
    In {
        column: usize,
        values: Vec<Value>,
        negated: bool,
    },
    IsNull {
        column: usize,
        negated: bool,
    },
}

/// A parsed filter, checked against the columns it was parsed for.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    text: String,
    columns: Vec<MetadataColumn>,
    expr: Expr,
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Filter {
    /// Parses `text` as a filter over `columns` (usually [`filter_columns`] of an
    /// index's metadata), checking every comparison against its column's type.
    pub fn parse(text: &str, columns: &[MetadataColumn]) -> Result<Self, FilterError> {
        let mut parser = Parser::new(text, columns)?;
        let expr = parser.parse_or(0)?;
        parser.expect_end()?;
        Ok(Self {
            text: text.to_string(),
            columns: columns.to_vec(),
            expr,
        })
    }

    /// The filter as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// For each row of `table` (a documents table: see
    /// `saeidx_format::metadata::read_documents`), whether the filter is true for it.
    pub fn matches(&self, table: &RecordBatch) -> Result<Vec<bool>, FilterError> {
        let columns = self.bind(table)?;
        Ok((0..table.num_rows())
            .map(|row| eval(&self.expr, &columns, row) == Some(true))
            .collect())
    }

    /// The numbers of the documents of `table` the filter selects, ascending: the `doc`
    /// column's values where it has one, else the row numbers.
    pub fn matching_documents(&self, table: &RecordBatch) -> Result<Vec<u32>, FilterError> {
        let mask = self.matches(table)?;
        let doc = table
            .column_by_name("doc")
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>());
        let mut docs: Vec<u32> = mask
            .iter()
            .enumerate()
            .filter(|(_, selected)| **selected)
            .map(|(row, _)| doc.map_or(row as u32, |doc| doc.value(row)))
            .collect();
        docs.sort_unstable();
        Ok(docs)
    }

    /// The columns the filter uses, found in `table` (by their index in the filter's
    /// columns; `None` for the columns it does not use).
    fn bind<'a>(&self, table: &'a RecordBatch) -> Result<Vec<Option<Cells<'a>>>, FilterError> {
        let mut used = vec![false; self.columns.len()];
        self.expr.mark_columns(&mut used);
        self.columns
            .iter()
            .zip(used)
            .map(|(column, used)| {
                if !used {
                    return Ok(None);
                }
                let fail = |reason: String| FilterError::Table {
                    column: column.name.clone(),
                    reason,
                };
                let array = table
                    .column_by_name(&column.name)
                    .ok_or_else(|| fail("is missing".into()))?;
                Cells::of(column.kind, array.as_ref())
                    .map(Some)
                    .ok_or_else(|| {
                        fail(format!("holds {}, not {}", array.data_type(), column.kind))
                    })
            })
            .collect()
    }
}

impl Expr {
    /// Sets `used[c]` for every column `c` the expression reads.
    fn mark_columns(&self, used: &mut [bool]) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.mark_columns(used);
                b.mark_columns(used);
            }
            Expr::Not(a) => a.mark_columns(used),
            Expr::Compare { column, .. }
            | Expr::In { column, .. }
            | Expr::IsNull { column, .. } => {
                used[*column] = true;
            }
        }
    }
}

/// A column's values, typed.
#[derive(Clone, Copy)]
enum Cells<'a> {
    Str(&'a StringArray),
    LargeStr(&'a LargeStringArray),
    Int(&'a Int64Array),
    U32(&'a UInt32Array),
    Float(&'a Float64Array),
    Bool(&'a BooleanArray),
    Time(&'a TimestampMicrosecondArray),
}

/// One cell, typed.
enum Cell<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
}

impl<'a> Cells<'a> {
    fn of(kind: MetadataType, array: &'a dyn Array) -> Option<Self> {
        let any = array.as_any();
        Some(match kind {
            MetadataType::String => match any.downcast_ref::<StringArray>() {
                Some(array) => Self::Str(array),
                None => Self::LargeStr(any.downcast_ref()?),
            },
            MetadataType::Integer => match any.downcast_ref::<Int64Array>() {
                Some(array) => Self::Int(array),
                None => Self::U32(any.downcast_ref()?),
            },
            MetadataType::Float => Self::Float(any.downcast_ref()?),
            MetadataType::Bool => Self::Bool(any.downcast_ref()?),
            MetadataType::Timestamp => Self::Time(any.downcast_ref()?),
        })
    }

    fn get(&self, row: usize) -> Option<Cell<'a>> {
        macro_rules! cell {
            ($array:expr, $variant:ident, $convert:expr) => {
                (!$array.is_null(row)).then(|| Cell::$variant($convert($array.value(row))))
            };
        }
        match *self {
            Self::Str(array) => cell!(array, Str, |v| v),
            Self::LargeStr(array) => cell!(array, Str, |v| v),
            Self::Int(array) => cell!(array, Int, |v| v),
            Self::U32(array) => cell!(array, Int, i64::from),
            Self::Float(array) => cell!(array, Float, |v| v),
            Self::Bool(array) => cell!(array, Bool, |v| v),
            Self::Time(array) => cell!(array, Time, |v| v),
        }
    }
}

/// Floats ordered as DuckDB orders them: NaN equals NaN and is above every number.
fn compare_floats(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// How a cell compares with a value of its column's domain (type-checked at parse).
fn compare(cell: &Cell<'_>, value: &Value) -> Ordering {
    match (cell, value) {
        (Cell::Str(a), Value::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Cell::Int(a), Value::Int(b)) | (Cell::Time(a), Value::Time(b)) => a.cmp(b),
        (Cell::Int(a), Value::Float(b)) => compare_floats(*a as f64, *b),
        (Cell::Float(a), Value::Float(b)) => compare_floats(*a, *b),
        (Cell::Float(a), Value::Int(b)) => compare_floats(*a, *b as f64),
        (Cell::Bool(a), Value::Bool(b)) => a.cmp(b),
        // The parser only builds the pairs above.
        _ => Ordering::Less,
    }
}

/// SQL's three-valued evaluation: `None` is unknown.
fn eval(expr: &Expr, columns: &[Option<Cells<'_>>], row: usize) -> Option<bool> {
    // `bind` bound every column the expression reads.
    let cell = |column: usize| columns[column].and_then(|cells| cells.get(row));
    match expr {
        Expr::And(a, b) => match (eval(a, columns, row), eval(b, columns, row)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval(a, columns, row), eval(b, columns, row)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Not(a) => eval(a, columns, row).map(|value| !value),
        Expr::Compare { column, op, value } => {
            cell(*column).map(|cell| op.holds(compare(&cell, value)))
        }
        Expr::In {
            column,
            values,
            negated,
        } => cell(*column).map(|cell| {
            values
                .iter()
                .any(|value| compare(&cell, value) == Ordering::Equal)
                != *negated
        }),
        Expr::IsNull { column, negated } => Some(cell(*column).is_none() != *negated),
    }
}

/// A token of the filter language.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word: a column name or a keyword.
    Word(String),
    /// A `"quoted"` column name.
    Quoted(String),
    /// A `'string'`.
    Str(String),
    /// A number, as written.
    Number(String),
    Op(Op),
    Open,
    Close,
    Comma,
    End,
}

/// A token and the character offset where it starts.
#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    at: usize,
}

struct Parser<'a> {
    text: &'a str,
    columns: &'a [MetadataColumn],
    tokens: Vec<Token>,
    next: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, columns: &'a [MetadataColumn]) -> Result<Self, FilterError> {
        let mut parser = Self {
            text,
            columns,
            tokens: Vec::new(),
            next: 0,
        };
        let length = text.chars().count();
        if length > MAX_FILTER_CHARS {
            return Err(parser.error(
                MAX_FILTER_CHARS,
                format!("the filter is {length} characters, over {MAX_FILTER_CHARS}"),
            ));
        }
        parser.tokens = tokenize(text).map_err(|(at, message)| parser.error(at, message))?;
        Ok(parser)
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> FilterError {
        FilterError::Invalid {
            text: self.text.to_string(),
            offset,
            message: message.into(),
            columns: saeidx_format::metadata::describe_columns(self.columns),
        }
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    /// Whether the next token is the keyword `word`; consumes it if so.
    fn keyword(&mut self, word: &str) -> bool {
        let found = matches!(&self.peek().tok, Tok::Word(w) if w.eq_ignore_ascii_case(word));
        if found {
            self.next += 1;
        }
        found
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), FilterError> {
        let token = self.advance();
        if token.tok == tok {
            Ok(())
        } else {
            Err(self.error(
                token.at,
                format!("expected {what}, found {}", describe(&token.tok)),
            ))
        }
    }

    fn expect_end(&mut self) -> Result<(), FilterError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::End => Ok(()),
            Tok::Close => Err(self.error(token.at, "a `)` without its `(`")),
            other => Err(self.error(
                token.at,
                format!(
                    "expected `and`, `or` or the end of the filter, found {}",
                    describe(&other)
                ),
            )),
        }
    }

    fn parse_or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.parse_and(depth)?;
        while self.keyword("or") {
            let right = self.parse_and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.parse_not(depth)?;
        while self.keyword("and") {
            let right = self.parse_not(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_not(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if depth > MAX_FILTER_DEPTH {
            let at = self.peek().at;
            return Err(self.error(at, format!("nested deeper than {MAX_FILTER_DEPTH} levels")));
        }
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.parse_not(depth + 1)?)));
        }
        if self.peek().tok == Tok::Open {
            self.advance();
            let inner = self.parse_or(depth + 1)?;
            self.expect(Tok::Close, "`)` to close the `(`")?;
            return Ok(inner);
        }
        self.parse_predicate()
    }

    /// `column op value`, `column [not] in (...)`, `column is [not] null`.
    fn parse_predicate(&mut self) -> Result<Expr, FilterError> {
        let column = self.parse_column()?;
        let token = self.advance();
        match &token.tok {
            Tok::Op(op) => {
                let value = self.parse_value(column)?;
                return Ok(Expr::Compare {
                    column,
                    op: *op,
                    value,
                });
            }
            Tok::Word(word) if word.eq_ignore_ascii_case("is") => {
                let negated = self.keyword("not");
                if !self.keyword("null") {
                    let found = self.peek().clone();
                    return Err(self.error(
                        found.at,
                        format!(
                            "expected `null` after `is{}`, found {}",
                            if negated { " not" } else { "" },
                            describe(&found.tok)
                        ),
                    ));
                }
                return Ok(Expr::IsNull { column, negated });
            }
            Tok::Word(word) if word.eq_ignore_ascii_case("in") => {
                return self.parse_in(column, false);
            }
            Tok::Word(word) if word.eq_ignore_ascii_case("not") && self.keyword("in") => {
                return self.parse_in(column, true);
            }
            _ => {}
        }
        Err(self.error(
            token.at,
            format!(
                "expected a comparison (= != < <= > >=), `in`, `not in`, `is null` or `is not \
                 null` after column {:?}, found {}",
                self.columns[column].name,
                describe(&token.tok)
            ),
        ))
    }

    fn parse_column(&mut self) -> Result<usize, FilterError> {
        let token = self.advance();
        let name = match &token.tok {
            Tok::Word(word) if is_keyword(word) => {
                return Err(self.error(
                    token.at,
                    format!(
                        "expected a column name, found the keyword `{word}` (a column of that \
                         name is written \"{word}\")"
                    ),
                ));
            }
            Tok::Word(name) | Tok::Quoted(name) => name,
            other => {
                return Err(self.error(
                    token.at,
                    format!(
                        "expected a column name, `not` or `(`, found {}",
                        describe(other)
                    ),
                ));
            }
        };
        // Names match exactly, else regardless of case (as in SQL) when that is unique.
        let exact = self.columns.iter().position(|column| column.name == *name);
        let folded = || {
            let mut matches = self
                .columns
                .iter()
                .enumerate()
                .filter(|(_, column)| column.name.eq_ignore_ascii_case(name));
            match (matches.next(), matches.next()) {
                (Some((index, _)), None) => Some(index),
                _ => None,
            }
        };
        exact
            .or_else(folded)
            .ok_or_else(|| self.error(token.at, format!("no column {name:?} in this index")))
    }

    fn parse_in(&mut self, column: usize, negated: bool) -> Result<Expr, FilterError> {
        self.expect(Tok::Open, "`(` and a list of values after `in`")?;
        let mut values = vec![self.parse_value(column)?];
        loop {
            let token = self.advance();
            match token.tok {
                Tok::Comma => values.push(self.parse_value(column)?),
                Tok::Close => break,
                other => {
                    return Err(self.error(
                        token.at,
                        format!(
                            "expected `,` or `)` in the list, found {}",
                            describe(&other)
                        ),
                    ));
                }
            }
        }
        Ok(Expr::In {
            column,
            values,
            negated,
        })
    }

    /// A value for `column`, converted to its type.
    fn parse_value(&mut self, column: usize) -> Result<Value, FilterError> {
        let token = self.advance();
        let MetadataColumn { name, kind } = &self.columns[column];
        let mismatch = |found: &str| {
            let wanted = match kind {
                MetadataType::String => "a 'string' in single quotes".to_string(),
                MetadataType::Integer | MetadataType::Float => "a number such as 1900".into(),
                MetadataType::Bool => "true or false".into(),
                MetadataType::Timestamp => {
                    "a quoted time such as '2024-05-01' or '2024-05-01T12:00:00Z'".into()
                }
            };
            self.error(
                token.at,
                format!("column {name:?} is of type {kind}: compare it with {wanted}, not {found}"),
            )
        };
        match (&token.tok, kind) {
            (Tok::Str(text), MetadataType::String) => Ok(Value::Str(text.clone())),
            (Tok::Str(text), MetadataType::Timestamp) => {
                parse_timestamp(text).map(Value::Time).ok_or_else(|| {
                    self.error(
                        token.at,
                        format!("{text:?} is not a time: expected {TIMESTAMP_FORMS}"),
                    )
                })
            }
            (Tok::Number(number), MetadataType::Integer | MetadataType::Float) => {
                self.number(number, *kind, token.at)
            }
            (Tok::Word(word), MetadataType::Bool) if word.eq_ignore_ascii_case("true") => {
                Ok(Value::Bool(true))
            }
            (Tok::Word(word), MetadataType::Bool) if word.eq_ignore_ascii_case("false") => {
                Ok(Value::Bool(false))
            }
            (Tok::Word(word), _) if word.eq_ignore_ascii_case("null") => Err(self.error(
                token.at,
                format!(
                    "a comparison with null is never true: write `{name} is null` or `{name} is \
                     not null`"
                ),
            )),
            (other, _) => Err(mismatch(&describe(other))),
        }
    }

    fn number(&self, number: &str, kind: MetadataType, at: usize) -> Result<Value, FilterError> {
        let integer = !number.contains(['.', 'e', 'E']);
        if integer
            && kind == MetadataType::Integer
            && let Ok(value) = number.parse::<i64>()
        {
            return Ok(Value::Int(value));
        }
        match number.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Value::Float(value)),
            _ => Err(self.error(at, format!("{number} is not a number this filter can hold"))),
        }
    }
}

const KEYWORDS: [&str; 8] = ["and", "or", "not", "in", "is", "null", "true", "false"];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(word) if is_keyword(word) => format!("`{word}`"),
        Tok::Word(word) | Tok::Quoted(word) => format!("the column name {word:?}"),
        Tok::Str(text) => format!("the string '{text}'"),
        Tok::Number(number) => format!("the number {number}"),
        Tok::Op(_) => "a comparison operator".into(),
        Tok::Open => "`(`".into(),
        Tok::Close => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::End => "the end of the filter".into(),
    }
}

/// Splits a filter into tokens; an error is `(character offset, message)`.
fn tokenize(text: &str) -> Result<Vec<Token>, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i;
        let tok = match c {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' | ')' | ',' => {
                i += 1;
                match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    _ => Tok::Comma,
                }
            }
            '=' | '!' | '<' | '>' => {
                let (op, length) = operator(&chars[i..]).ok_or_else(|| {
                    (
                        at,
                        "`!` must be followed by `=` (`!=` is not equal)".to_string(),
                    )
                })?;
                i += length;
                Tok::Op(op)
            }
            '\'' | '"' => {
                let (content, end) = quoted(&chars, i)?;
                i = end;
                if c == '\'' {
                    Tok::Str(content)
                } else {
                    Tok::Quoted(content)
                }
            }
            _ if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let end = number_end(&chars, i);
                i = end;
                Tok::Number(chars[at..end].iter().collect())
            }
            _ if c.is_alphabetic() || c == '_' => {
                let end = (i..chars.len())
                    .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_'))
                    .unwrap_or(chars.len());
                i = end;
                Tok::Word(chars[at..end].iter().collect())
            }
            _ => return Err((at, format!("unexpected character {c:?}"))),
        };
        tokens.push(Token { tok, at });
    }
    tokens.push(Token {
        tok: Tok::End,
        at: chars.len(),
    });
    Ok(tokens)
}

fn operator(chars: &[char]) -> Option<(Op, usize)> {
    let second = chars.get(1).copied();
    Some(match (chars[0], second) {
        ('=', Some('=')) => (Op::Eq, 2),
        ('=', _) => (Op::Eq, 1),
        ('!', Some('=')) => (Op::Ne, 2),
        ('<', Some('>')) => (Op::Ne, 2),
        ('<', Some('=')) => (Op::Le, 2),
        ('<', _) => (Op::Lt, 1),
        ('>', Some('=')) => (Op::Ge, 2),
        ('>', _) => (Op::Gt, 1),
        _ => return None,
    })
}

/// The content of a quoted string or name starting at `start` (quotes doubled inside),
/// and the offset after its closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), (usize, String)> {
    let quote = chars[start];
    let mut content = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err((
                    start,
                    format!(
                        "this {quote} is never closed (write {quote}{quote} for a {quote} inside)"
                    ),
                ));
            }
            Some(&c) if c == quote => {
                if chars.get(i + 1) == Some(&quote) {
                    content.push(quote);
                    i += 2;
                } else {
                    return Ok((content, i + 1));
                }
            }
            Some(&c) => {
                content.push(c);
                i += 1;
            }
        }
    }
}

/// Where a number starting at `start` ends: sign, digits, a fraction, an exponent.
fn number_end(chars: &[char], start: usize) -> usize {
    let mut i = start;
    let digits = |i: &mut usize| {
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
    };
    if matches!(chars.get(i), Some('-' | '+')) {
        i += 1;
    }
    digits(&mut i);
    if chars.get(i) == Some(&'.') {
        i += 1;
        digits(&mut i);
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(chars.get(j), Some('-' | '+')) {
            j += 1;
        }
        if chars.get(j).is_some_and(char::is_ascii_digit) {
            i = j;
            digits(&mut i);
        }
    }
    // Letters glued to a number (`12abc`) are part of it, and make it invalid.
    while chars
        .get(i)
        .is_some_and(|c| c.is_alphanumeric() || *c == '_')
    {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
