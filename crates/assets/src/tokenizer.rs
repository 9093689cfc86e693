//! A Hugging Face `tokenizer.json` rebuilt from a GGUF file's vocabulary and merges.
//!
//! GGUF files of byte-level BPE models (`tokenizer.ggml.model = "gpt2"`) carry the
//! vocabulary, the merges, each token's type and the name of the pre-tokenizer llama.cpp
//! applies (`tokenizer.ggml.pre`). Only pre-tokenizers whose Hugging Face equivalent is
//! known are accepted: an approximate tokenizer would silently change every token id.

use std::path::Path;

use mlx_rs::io::GgufFile;
use serde_json::json;
use tokenizers::{
    AddedToken, DecoderWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer,
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::bpe::{BPE, Vocab},
    pre_tokenizers::{byte_level::ByteLevel, digits::Digits, sequence::Sequence},
    processors::byte_level::ByteLevel as ByteLevelProcessor,
};

use crate::ImportError;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_UNKNOWN: i32 = 2;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// A tokenizer rebuilt from GGUF metadata, with the settings `tokenizer_config.json` needs.
pub struct GgufTokenizer {
    tokenizer: Tokenizer,
    tokens: Vec<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    unknown: Option<u32>,
    padding: Option<u32>,
    chat_template: Option<String>,
    max_length: Option<i64>,
}

fn token_id(file: &GgufFile, key: &str) -> Result<Option<u32>, ImportError> {
    match file.get_metadata_array(key)? {
        Some(value) => Ok(Some(value.try_item_cast::<u32>().map_err(|e| {
            ImportError::Gguf(format!("metadata {key} is not a token id: {e}"))
        })?)),
        None => Ok(None),
    }
}

/// The Hugging Face pre-tokenizer equivalent to llama.cpp's named one.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, ImportError> {
    let byte_level = ByteLevel::new(false, true, true);
    match pre {
        // GPT-2's regex over bytes.
        "gpt-2" | "default" => Ok(byte_level.into()),
        // SmolLM: every digit is its own pre-token, then GPT-2's regex.
        "smollm" => Ok(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()),
        other => Err(ImportError::Unsupported(format!(
            "GGUF pre-tokenizer {other:?}: saeidx knows the Hugging Face equivalents of \
             \"smollm\", \"gpt-2\" and \"default\"; convert this model's tokenizer with its \
             original tokenizer.json instead"
        ))),
    }
}

impl GgufTokenizer {
    /// Rebuilds the tokenizer of a byte-level BPE GGUF model.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ImportError> {
        let model = file.get_metadata_string("tokenizer.ggml.model")?;
        if model.as_deref() != Some("gpt2") {
            return Err(ImportError::Unsupported(format!(
                "GGUF tokenizer model {model:?}: only byte-level BPE (\"gpt2\") is supported"
            )));
        }
        let pre = file
            .get_metadata_string("tokenizer.ggml.pre")?
            .unwrap_or_else(|| "default".into());
        let tokens = file
            .get_metadata_strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| ImportError::Gguf("tokenizer.ggml.tokens is missing".into()))?;
        let merges = file
            .get_metadata_strings("tokenizer.ggml.merges")?
            .ok_or_else(|| ImportError::Gguf("tokenizer.ggml.merges is missing".into()))?;
        let types: Vec<i32> = match file.get_metadata_array("tokenizer.ggml.token_type")? {
            Some(types) => types
                .as_type::<i32>()?
                .try_as_slice::<i32>()
                .map_err(|e| ImportError::Gguf(format!("tokenizer.ggml.token_type: {e}")))?
                .to_vec(),
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(ImportError::Gguf(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            )));
        }

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        if vocab.len() != tokens.len() {
            return Err(ImportError::Gguf(
                "the vocabulary has duplicate tokens".into(),
            ));
        }
        let merges = merges
            .iter()
            .map(|merge| {
                merge
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ImportError::Gguf(format!("malformed merge {merge:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| ImportError::Tokenizer(e.to_string()))?;

        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer(&pre)?));
        tokenizer.with_decoder(Some(DecoderWrapper::from(ByteLevelDecoder::default())));
        tokenizer.with_post_processor(Some(PostProcessorWrapper::from(ByteLevelProcessor::new(
            true, false, true,
        ))));
        let added = |special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, kind)| match special {
                    true => matches!(**kind, TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN),
                    false => **kind == TOKEN_TYPE_USER_DEFINED,
                })
                .map(|(token, _)| AddedToken::from(token.clone(), special).normalized(false))
                .collect()
        };
        tokenizer.add_special_tokens(&added(true));
        tokenizer.add_tokens(&added(false));

        let adds_bos = match file.get_metadata_array("tokenizer.ggml.add_bos_token")? {
            Some(flag) => flag.try_item_cast::<bool>().unwrap_or(false),
            None => false,
        };
        if adds_bos {
            return Err(ImportError::Unsupported(
                "GGUF tokenizers that add a BOS token are not supported yet".into(),
            ));
        }

        Ok(Self {
            tokenizer,
            bos: token_id(file, "tokenizer.ggml.bos_token_id")?,
            eos: token_id(file, "tokenizer.ggml.eos_token_id")?,
            unknown: token_id(file, "tokenizer.ggml.unknown_token_id")?,
            padding: token_id(file, "tokenizer.ggml.padding_token_id")?,
            chat_template: file.get_metadata_string("tokenizer.chat_template")?,
            max_length: match file.get_metadata_array("llama.context_length")? {
                Some(length) => length.try_item_cast::<i64>().ok(),
                None => None,
            },
            tokens,
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The beginning-of-sequence token id, if the model has one.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token id, if the model has one.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos
    }

    fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|id| self.tokens.get(id as usize))
            .map(String::as_str)
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json`.
    pub fn write(&self, dir: &Path) -> Result<(), ImportError> {
        let json = self
            .tokenizer
            .to_string(true)
            .map_err(|e| ImportError::Tokenizer(e.to_string()))?;
        crate::write_bytes(&dir.join("tokenizer.json"), json.as_bytes())?;

        let specials = json!({
            "bos_token": self.token(self.bos),
            "eos_token": self.token(self.eos),
            "unk_token": self.token(self.unknown),
            "pad_token": self.token(self.padding),
        });
        let mut config = json!({
            // Not "GPT2Tokenizer": transformers would then rebuild the pre-tokenizer as plain
            // ByteLevel and drop the digit split, so mlx-lm would tokenize differently.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": false,
            "add_eos_token": false,
            "add_prefix_space": false,
            "clean_up_tokenization_spaces": false,
            "model_max_length": self.max_length,
            "chat_template": self.chat_template,
        });
        for (key, value) in specials.as_object().expect("an object") {
            config[key] = value.clone();
        }
        crate::write_json(&dir.join("tokenizer_config.json"), &config)?;
        crate::write_json(&dir.join("special_tokens_map.json"), &specials)?;
        Ok(())
    }
}
