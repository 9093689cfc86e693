//! The most one question may ask for: the number of answers, examples, bands,
//! neighbours, sampled features and tokens of context.
//!
//! Every size a caller chooses (a CLI flag, a query parameter of the web server, a
//! Python argument) is checked here before anything is computed, so each front end
//! refuses the same requests with the same message, and no answer ever allocates memory
//! in proportion to a number someone typed. The bounds are generous for people (who
//! read tens of examples) and for scripts (which page through [`Limit::K`] answers),
//! and keep the largest possible answer to a few megabytes of JSON.

use crate::QueryError;

/// A size a question can ask for, with its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Answers of `top_texts` and `top_features` (`--k`, `k=`, `top_k=`).
    K,
    /// Tokens of context on each side of a hit (`--context`).
    Context,
    /// Examples per feature report and per activation band (`--examples`, `--texts`).
    Examples,
    /// Activation bands of a feature report (`--bands`).
    Bands,
    /// Neighbours of a feature (`--neighbours`).
    Neighbours,
    /// Features sampled at once (`sample --n`).
    Sample,
    /// Features of a text explained at once (`explain --features`).
    Features,
}

impl Limit {
    /// Every limit, for documentation and tests.
    pub const ALL: [Limit; 7] = [
        Limit::K,
        Limit::Context,
        Limit::Examples,
        Limit::Bands,
        Limit::Neighbours,
        Limit::Sample,
        Limit::Features,
    ];

    /// The largest value accepted.
    pub const fn max(self) -> u64 {
        match self {
            Limit::K => 10_000,
            Limit::Context => 256,
            Limit::Examples => 100,
            Limit::Bands => 20,
            Limit::Neighbours => 1_000,
            Limit::Sample => 100,
            Limit::Features => 100,
        }
    }

    /// What the number counts, as error messages name it.
    pub const fn what(self) -> &'static str {
        match self {
            Limit::K => "answers (k)",
            Limit::Context => "tokens of context on each side",
            Limit::Examples => "examples",
            Limit::Bands => "activation bands",
            Limit::Neighbours => "neighbours",
            Limit::Sample => "sampled features",
            Limit::Features => "features to explain",
        }
    }

    /// `asked`, if it is within the limit; otherwise [`QueryError::Limit`].
    pub fn check<T: TryInto<u64> + Copy>(self, asked: T) -> Result<T, QueryError> {
        match asked.try_into() {
            Ok(value) if value <= self.max() => Ok(asked),
            Ok(value) => Err(QueryError::Limit {
                what: self.what(),
                asked: value.to_string(),
                max: self.max(),
            }),
            Err(_) => Err(QueryError::Limit {
                what: self.what(),
                asked: "a number too large".into(),
                max: self.max(),
            }),
        }
    }

    /// `text` with the limit stated, for help texts: `"How many texts (at most 10000)."`.
    pub fn help(self, text: &str) -> String {
        format!("{text} (at most {})", self.max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_the_limit_are_refused_with_the_limit() {
        for limit in Limit::ALL {
            assert_eq!(limit.check(limit.max()).unwrap(), limit.max());
            assert_eq!(limit.check(0usize).unwrap(), 0);
            let error = limit.check(limit.max() + 1).unwrap_err().to_string();
            assert!(
                error.contains(&limit.max().to_string()) && error.contains(limit.what()),
                "{error}"
            );
        }
        let error = Limit::K.check(u32::MAX as usize).unwrap_err().to_string();
        assert!(error.contains("4294967295"), "{error}");
        assert!(Limit::K.help("How many texts").ends_with("(at most 10000)"));
    }
}
