//! The converted default model, found through the hf-hub loader offline: its config,
//! every weight's shape, and its tokenizer's ids.

use mlx_rs::Dtype;
use saeidx_corpus::tokenizer::TextTokenizer;
use saeidx_model::checkpoint::Checkpoint;
use saeidx_tests::default_model;

#[test]
fn loads_from_the_hf_cache_with_the_smollm2_shape() {
    let files = default_model();
    let commit = files.commit.clone().expect("a hub snapshot has a commit");
    assert_eq!(commit.len(), 40);
    assert!(files.dir.ends_with(&commit));

    let checkpoint = Checkpoint::load(files).unwrap();
    let config = &checkpoint.config;
    assert_eq!(config.model_type, "llama");
    assert_eq!(config.family.name(), "llama");
    let arch = &config.architecture;
    assert_eq!(arch.layers, 30);
    assert_eq!(arch.hidden_size, 576);
    assert_eq!(arch.mlp.hidden, 1536);
    assert_eq!(arch.attention.heads, 9);
    assert_eq!(arch.attention.kv_heads, 3);
    assert_eq!(arch.attention.head_dim, 64);
    assert_eq!(arch.vocab_size, 49152);
    let rope = arch.attention.layers[0].rope.as_ref().unwrap();
    assert_eq!((rope.base, rope.dims), (100_000.0, 64));
    assert_eq!(arch.norm.eps, 1e-5);
    // Tied: config.json says so, and the checkpoint has no lm_head.
    assert_eq!(config.raw["tie_word_embeddings"], true);
    assert!(!checkpoint.tensors.contains_key("lm_head.weight"));

    let summary = checkpoint.summary();
    // 30 blocks × (7 quantized linears × 3 + 2 norms) + embedding triple + final norm.
    assert_eq!(summary.tensors, 30 * 23 + 3 + 1);
    assert_eq!(summary.parameters, 134_515_008);
    assert_eq!(summary.quantized_modules.get("4-bit/g32"), Some(&210));
    assert_eq!(summary.quantized_modules.get("8-bit/g32"), Some(&1));
    assert_eq!(summary.float_modules, 0);

    let tensor = |key: &str| &checkpoint.tensors[key];
    let q = tensor("model.layers.0.self_attn.q_proj.weight");
    assert_eq!((q.shape(), q.dtype()), (&[576, 72][..], Dtype::Uint32));
    let k_scales = tensor("model.layers.29.self_attn.k_proj.scales");
    assert_eq!(k_scales.shape(), &[192, 18]);
    let down = tensor("model.layers.15.mlp.down_proj.weight");
    assert_eq!(down.shape(), &[576, 192]);
    let embed = tensor("model.embed_tokens.weight");
    assert_eq!(
        (embed.shape(), embed.dtype()),
        (&[49152, 144][..], Dtype::Uint32)
    );
    let norm = tensor("model.norm.weight");
    assert_eq!((norm.shape(), norm.dtype()), (&[576][..], Dtype::Float32));
}

#[test]
fn tokenizer_has_the_smollm2_vocabulary_and_specials() {
    let tokenizer = TextTokenizer::from_file(&default_model().tokenizer).unwrap();
    assert_eq!(tokenizer.vocab_size(), 49152);
    assert_eq!(tokenizer.id("<|endoftext|>"), Some(0));
    assert_eq!(tokenizer.id("<|im_start|>"), Some(1));
    assert_eq!(tokenizer.id("<|im_end|>"), Some(2));
    assert_eq!(tokenizer.token(49151).as_deref(), Some("ectable"));

    let text = "<|im_start|>user\nParis 2024<|im_end|>";
    let tokens = tokenizer.encode(text).unwrap();
    let pieces: Vec<&str> = tokens.spans.iter().map(|s| &text[s.clone()]).collect();
    assert_eq!(
        pieces,
        [
            "<|im_start|>",
            "user",
            "\n",
            "Paris",
            " ",
            "2",
            "0",
            "2",
            "4",
            "<|im_end|>"
        ]
    );
    assert_eq!(tokens.ids.first(), Some(&1));
    assert_eq!(tokens.ids.last(), Some(&2));
    assert_eq!(
        tokens.special,
        [
            true, false, false, false, false, false, false, false, false, true
        ]
    );
    // No BOS is added: the model was trained without one (add_bos_token false).
    assert_eq!(tokenizer.encode("Paris").unwrap().ids.len(), 1);
    assert_eq!(tokenizer.added_ids().unwrap(), Vec::<u32>::new());
}
