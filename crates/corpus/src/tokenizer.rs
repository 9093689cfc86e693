//! Tokenization with a Hugging Face `tokenizer.json`.

use std::{collections::HashSet, ops::Range, path::Path};

use tokenizers::Tokenizer;

use crate::CorpusError;

/// A tokenizer loaded from a `tokenizer.json`.
pub struct TextTokenizer {
    inner: Tokenizer,
    special_ids: HashSet<u32>,
}

/// A tokenized text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Token ids, in order.
    pub ids: Vec<u32>,
    /// For each token, the byte range of the text it covers (empty for tokens the
    /// tokenizer inserted). Ranges never split a UTF-8 character, so tokens that divide
    /// one character's bytes between them (byte-level BPE splits `" Å"` into a token
    /// for the space and Å's first byte, and one for its second byte) both cover that
    /// character and overlap there.
    pub spans: Vec<Range<usize>>,
    /// Whether each token is a special (control) token, written in the text or added.
    pub special: Vec<bool>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, CorpusError> {
        let inner = Tokenizer::from_file(path).map_err(|e| CorpusError::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let special_ids = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .collect();
        Ok(Self { inner, special_ids })
    }

    /// Tokenizes a document as the index job does: [`TextTokenizer::encode`], then
    /// `prepend_bos` (a job's `bos = "prepend"`) before the first token unless it is
    /// already there (as a special token with an empty span).
    pub fn encode_document(
        &self,
        text: &str,
        prepend_bos: Option<u32>,
    ) -> Result<Tokens, CorpusError> {
        let mut tokens = self.encode(text)?;
        if let Some(bos) = prepend_bos
            && tokens.ids.first() != Some(&bos)
        {
            tokens.ids.insert(0, bos);
            tokens.spans.insert(0, 0..0);
            tokens.special.insert(0, true);
        }
        Ok(tokens)
    }

    /// Tokenizes `text` exactly as the model's own tokenizer does by default: special
    /// tokens written in the text (e.g. `<|im_start|>`) become their ids, and whatever
    /// the tokenizer's post-processor adds (for some models a BOS token) is added.
    pub fn encode(&self, text: &str) -> Result<Tokens, CorpusError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| CorpusError::Encode(e.to_string()))?;
        Ok(Tokens {
            ids: encoding.get_ids().to_vec(),
            spans: encoding
                .get_offsets()
                .iter()
                .map(|&(start, end)| start..end)
                .collect(),
            special: encoding
                .get_ids()
                .iter()
                .zip(encoding.get_special_tokens_mask())
                .map(|(id, &added)| added == 1 || self.special_ids.contains(id))
                .collect(),
        })
    }

    /// The ids the tokenizer adds to every text on its own (a BOS token, for some models),
    /// found by encoding an empty text. Empty for SmolLM2. Recorded in manifests as the
    /// special-token policy: the model sees exactly these plus the text's tokens.
    pub fn added_ids(&self) -> Result<Vec<u32>, CorpusError> {
        Ok(self.encode("")?.ids)
    }

    /// The vocabulary entry of `id` (byte-level BPE pieces look like `Ġworld`).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// What token `id` reads as on its own: its decoded text (` world`, not `Ġworld`;
    /// special tokens by name), its vocabulary entry when decoding gives nothing, and
    /// `<id N>` for an id past the tokenizer's vocabulary (a model's padding rows).
    pub fn token_text(&self, id: u32) -> String {
        match self.inner.decode(&[id], false) {
            Ok(text) if !text.is_empty() => text,
            _ => self.token(id).unwrap_or_else(|| format!("<id {id}>")),
        }
    }

    /// The id of a vocabulary entry or special token.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of entries, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
