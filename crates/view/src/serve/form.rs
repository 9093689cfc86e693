//! Query strings and form bodies: decoding, and reading typed parameters with errors a
//! client can act on (400).

use saeidx_query::{Aggregate, DocRef, Exclusions, Rank, Restriction, TokenPattern};

/// A failure: HTTP status and message.
pub(super) type Failure = (u16, String);

/// The decoded `key=value` pairs of a query string or form body.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text.
    pub fn parse(text: &str) -> Self {
        Self(
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (url_decode(key), url_decode(value))
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The non-blank value of `key`, trimmed.
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// A number (`default` when absent).
    pub fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, Failure> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => parse_number(text, key),
        }
    }

    /// Every value of a repeated numeric `key` (`token=1&token=2`), in order.
    pub fn numbers<T: std::str::FromStr>(&self, key: &str) -> Result<Vec<T>, Failure> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| parse_number(v, key))
            .collect()
    }

    /// A number that must be given.
    pub fn required<T: std::str::FromStr>(&self, key: &str) -> Result<T, Failure> {
        let text = self
            .get(key)
            .ok_or_else(|| (400, format!("give {key}=NUMBER")))?;
        parse_number(text, key)
    }

    /// A yes/no flag (`1`, `true`, `yes`, `on`).
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    }

    /// The tokens left out: `include_special`, `include_sinks` put them back.
    pub fn exclusions(&self) -> Exclusions {
        Exclusions {
            special: !self.flag("include_special"),
            sinks: !self.flag("include_sinks"),
        }
    }

    /// `rank=token|document-max|document-sum` (default token).
    pub fn rank(&self) -> Result<Rank, Failure> {
        match self.get("rank") {
            None => Ok(Rank::Token),
            Some(name) => Rank::from_name(name).ok_or_else(|| {
                (
                    400,
                    format!("rank {name:?} is not one of token, document-max, document-sum"),
                )
            }),
        }
    }

    /// `aggregate=max|sum` (default max).
    pub fn aggregate(&self) -> Result<Aggregate, Failure> {
        match self.get("aggregate") {
            None | Some("max") => Ok(Aggregate::Max),
            Some("sum") => Ok(Aggregate::Sum),
            Some(other) => Err((400, format!("aggregate {other:?} is not one of max, sum"))),
        }
    }

    /// `doc=N` or `doc=ID` (a document's number or stable id).
    pub fn doc(&self) -> Result<DocRef, Failure> {
        let doc = self
            .text("doc")
            .ok_or_else(|| (400, "give doc=NUMBER or doc=ID".to_string()))?;
        Ok(match doc.parse::<u32>() {
            Ok(number) => DocRef::Number(number),
            Err(_) => DocRef::Id(doc),
        })
    }

    /// The documents a question looks at: `where=FILTER` and `docs=D,ID,...` (each
    /// optional; both: the listed documents the filter selects).
    pub fn restriction(&self) -> Restriction {
        self.restriction_named("where", "docs")
    }

    /// A restriction from the filter parameter `filter` and the list parameter `docs`.
    pub fn restriction_named(&self, filter: &str, docs: &str) -> Restriction {
        Restriction {
            filter: self.text(filter),
            docs: self.text(docs).map(|docs| {
                docs.split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| match d.parse::<u32>() {
                        Ok(number) => DocRef::Number(number),
                        Err(_) => DocRef::Id(d.to_string()),
                    })
                    .collect()
            }),
        }
    }

    /// Token patterns, in order: every `token=TEXT` (the text as given, spaces kept),
    /// `token_id=N` and `token_regex=RE`.
    pub fn token_patterns(&self) -> Result<Vec<TokenPattern>, Failure> {
        let mut patterns = Vec::new();
        for (key, value) in &self.0 {
            match key.as_str() {
                "token" if !value.is_empty() => patterns.push(TokenPattern::Text(value.clone())),
                "token_id" => patterns.push(TokenPattern::Id(parse_number(value, key)?)),
                "token_regex" if !value.is_empty() => {
                    patterns.push(TokenPattern::Regex(value.clone()));
                }
                _ => {}
            }
        }
        Ok(patterns)
    }

    /// `tokens=A..B`, if given.
    pub fn tokens(&self) -> Result<Option<std::ops::Range<u32>>, Failure> {
        let Some(text) = self.text("tokens") else {
            return Ok(None);
        };
        let (start, end) = text
            .split_once("..")
            .ok_or_else(|| (400, format!("tokens {text:?} is not START..END")))?;
        Ok(Some(
            parse_number(start, "tokens")?..parse_number(end, "tokens")?,
        ))
    }
}

fn parse_number<T: std::str::FromStr>(text: &str, key: &str) -> Result<T, Failure> {
    text.trim()
        .parse()
        .map_err(|_| (400, format!("{key} must be a whole number, not {text:?}")))
}

/// Decodes `application/x-www-form-urlencoded` text.
fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match text
                .get(i + 1..i + 3)
                .map(|hex| u8::from_str_radix(hex, 16))
            {
                Some(Ok(byte)) => {
                    out.push(byte);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
