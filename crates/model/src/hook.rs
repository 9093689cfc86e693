//! Hook points: where in the network activations are read.
//!
//! saeidx names hook points like TransformerLens and SAELens, `blocks.{L}.hook_{kind}`:
//!
//! | kind | the activation |
//! |---|---|
//! | `resid_pre` | residual stream entering block L (the embeddings for L = 0) |
//! | `attn.hook_z` | the attention heads' outputs of block L, concatenated (`o_proj`'s input: `heads × head_dim` wide, head-major) |
//! | `attn_out` | attention output of block L (after `o_proj`, before the residual add) |
//! | `resid_mid` | residual stream between attention and MLP of block L |
//! | `mlp_out` | MLP output of block L (after `down_proj`, before the residual add) |
//! | `resid_post` | residual stream leaving block L (= `resid_pre` of L + 1) |
//!
//! Accepted aliases, so SAEs from other tools name their hook as they ship it:
//! - mlxterp components with a separate layer: `mlp`, `attn`/`self_attn`, and
//!   `residual`/`resid`/`output` for the block's output;
//! - mlx-lm / mlxterp module paths: `model.layers.L` (block output), `model.layers.L.mlp`,
//!   `model.layers.L.self_attn`, also with mlxterp's `model.model.` prefix;
//! - sparsify hookpoints: `layers.L` (block output), `layers.L.mlp`, `layers.L.self_attn`.

use std::{fmt, str::FromStr};

/// Which activation of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookKind {
    /// The residual stream entering the block.
    ResidPre,
    /// The attention heads' outputs, concatenated before the output projection
    /// (TransformerLens's `attn.hook_z`, flattened).
    AttnZ,
    /// The attention sublayer's output.
    AttnOut,
    /// The residual stream after attention, before the MLP.
    ResidMid,
    /// The MLP sublayer's output.
    MlpOut,
    /// The residual stream leaving the block.
    ResidPost,
}

impl HookKind {
    /// All kinds, in the order the forward pass produces them.
    pub const ALL: [HookKind; 6] = [
        HookKind::ResidPre,
        HookKind::AttnZ,
        HookKind::AttnOut,
        HookKind::ResidMid,
        HookKind::MlpOut,
        HookKind::ResidPost,
    ];

    /// The kind's short name, e.g. `resid_post` (`attn_z` for `attn.hook_z`).
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::ResidPre => "resid_pre",
            HookKind::AttnZ => "attn_z",
            HookKind::AttnOut => "attn_out",
            HookKind::ResidMid => "resid_mid",
            HookKind::MlpOut => "mlp_out",
            HookKind::ResidPost => "resid_post",
        }
    }

    /// mlxterp's component names (and plain kind names).
    fn from_component(component: &str) -> Option<Self> {
        Some(match component {
            "mlp" | "mlp_out" => HookKind::MlpOut,
            "attn" | "self_attn" | "attn_out" | "attention" => HookKind::AttnOut,
            "residual" | "resid" | "output" | "resid_post" => HookKind::ResidPost,
            "resid_pre" => HookKind::ResidPre,
            "resid_mid" => HookKind::ResidMid,
            _ => return None,
        })
    }
}

/// One hook point: a layer and a kind. Serialized as its canonical name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct HookPoint {
    /// The block index, from 0.
    pub layer: usize,
    /// Which activation of the block.
    pub kind: HookKind,
}

/// A hook name that saeidx cannot place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// Not a known naming scheme.
    #[error(
        "unknown hook {0:?}: use blocks.L.hook_{{resid_pre,attn_out,resid_mid,mlp_out,resid_post}} or blocks.L.attn.hook_z, \
         a module path (model.layers.L, model.layers.L.mlp, model.layers.L.self_attn), or a \
         component (mlp, attn, self_attn, residual) with --layer L"
    )]
    Unknown(String),
    /// A component name without a layer.
    #[error("hook {0:?} names a component but no layer: give the layer too (e.g. --layer 15)")]
    MissingLayer(String),
    /// A layer given twice, differently.
    #[error("hook {name:?} is at layer {named} but layer {given} was also given")]
    ConflictingLayer {
        /// The hook name.
        name: String,
        /// The layer in the name.
        named: usize,
        /// The layer given separately.
        given: usize,
    },
    /// The hook does not exist in this family's block.
    #[error("{hook} does not exist in a {family} model: {reason}")]
    NotInFamily {
        /// The hook's name.
        hook: String,
        /// The model family.
        family: String,
        /// Why.
        reason: String,
    },
    /// The model has fewer layers.
    #[error("layer {layer} is out of range: the model has {layers} layers (0..={last})", last = layers - 1)]
    LayerOutOfRange {
        /// The layer asked for.
        layer: usize,
        /// The model's number of layers.
        layers: usize,
    },
}

impl HookPoint {
    /// The canonical name, `blocks.{layer}.hook_{kind}` (`blocks.{layer}.attn.hook_z`).
    pub fn name(&self) -> String {
        match self.kind {
            HookKind::AttnZ => format!("blocks.{}.attn.hook_z", self.layer),
            kind => format!("blocks.{}.hook_{}", self.layer, kind.as_str()),
        }
    }

    /// Parses any accepted hook name; `layer` completes component names (`mlp`) and
    /// must agree with a layer written in the name.
    pub fn parse(name: &str, layer: Option<usize>) -> Result<Self, HookError> {
        let trimmed = name.trim();
        let unknown = || HookError::Unknown(name.to_string());
        if let Some(kind) = HookKind::from_component(trimmed) {
            let layer = layer.ok_or_else(|| HookError::MissingLayer(name.to_string()))?;
            return Ok(Self { layer, kind });
        }
        let (named_layer, kind) = if let Some(rest) = trimmed.strip_prefix("blocks.") {
            let (layer, hook) = rest.split_once('.').ok_or_else(unknown)?;
            let kind = match hook {
                "attn.hook_z" => HookKind::AttnZ,
                _ => hook
                    .strip_prefix("hook_")
                    .and_then(|kind| HookKind::ALL.into_iter().find(|k| k.as_str() == kind))
                    .filter(|kind| *kind != HookKind::AttnZ)
                    .ok_or_else(unknown)?,
            };
            (layer.parse::<usize>().map_err(|_| unknown())?, kind)
        } else {
            let path = ["model.model.layers.", "model.layers.", "layers."]
                .iter()
                .find_map(|prefix| trimmed.strip_prefix(prefix))
                .ok_or_else(unknown)?;
            let (layer, module) = match path.split_once('.') {
                Some((layer, module)) => (layer, Some(module)),
                None => (path, None),
            };
            let kind = match module {
                None => HookKind::ResidPost,
                Some("mlp") => HookKind::MlpOut,
                Some("self_attn") | Some("attn") => HookKind::AttnOut,
                Some(_) => return Err(unknown()),
            };
            (layer.parse::<usize>().map_err(|_| unknown())?, kind)
        };
        if let Some(given) = layer.filter(|given| *given != named_layer) {
            return Err(HookError::ConflictingLayer {
                name: name.to_string(),
                named: named_layer,
                given,
            });
        }
        Ok(Self {
            layer: named_layer,
            kind,
        })
    }

    /// Checks the layer exists in a model with `layers` blocks.
    pub fn check_layers(&self, layers: usize) -> Result<(), HookError> {
        if self.layer < layers {
            Ok(())
        } else {
            Err(HookError::LayerOutOfRange {
                layer: self.layer,
                layers,
            })
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl From<HookPoint> for String {
    fn from(hook: HookPoint) -> Self {
        hook.name()
    }
}

impl TryFrom<String> for HookPoint {
    type Error = HookError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name, None)
    }
}

impl FromStr for HookPoint {
    type Err = HookError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(layer: usize, kind: HookKind) -> HookPoint {
        HookPoint { layer, kind }
    }

    #[test]
    fn every_naming_scheme_maps_to_one_hook() {
        use HookKind::*;
        for (name, layer, expected) in [
            ("blocks.15.hook_resid_post", None, hook(15, ResidPost)),
            ("blocks.0.hook_resid_pre", None, hook(0, ResidPre)),
            ("blocks.3.hook_resid_mid", None, hook(3, ResidMid)),
            ("blocks.3.hook_attn_out", Some(3), hook(3, AttnOut)),
            ("blocks.29.hook_mlp_out", None, hook(29, MlpOut)),
            ("blocks.7.attn.hook_z", None, hook(7, AttnZ)),
            ("mlp", Some(10), hook(10, MlpOut)),
            ("attn", Some(10), hook(10, AttnOut)),
            ("self_attn", Some(1), hook(1, AttnOut)),
            ("residual", Some(2), hook(2, ResidPost)),
            ("output", Some(2), hook(2, ResidPost)),
            ("model.layers.15", None, hook(15, ResidPost)),
            ("model.layers.15.mlp", None, hook(15, MlpOut)),
            ("model.model.layers.15.self_attn", None, hook(15, AttnOut)),
            ("layers.10", None, hook(10, ResidPost)),
            ("layers.10.mlp", None, hook(10, MlpOut)),
        ] {
            assert_eq!(HookPoint::parse(name, layer), Ok(expected), "{name}");
        }
        assert_eq!(hook(15, ResidPost).to_string(), "blocks.15.hook_resid_post");
        assert_eq!(hook(2, AttnZ).to_string(), "blocks.2.attn.hook_z");
        for kind in HookKind::ALL {
            let name = hook(4, kind).name();
            assert_eq!(name.parse::<HookPoint>(), Ok(hook(4, kind)));
        }
    }

    #[test]
    fn bad_names_say_what_is_accepted() {
        for name in [
            "blocks.1.hook_q",
            "blocks.1.hook_attn_z",
            "blocks.1.attn.hook_q",
            "layers.x",
            "model.layers.3.mlp.gate_proj",
            "resid_postt",
            "",
        ] {
            let error = HookPoint::parse(name, Some(1)).unwrap_err();
            assert!(matches!(error, HookError::Unknown(_)), "{name}: {error}");
            assert!(error.to_string().contains("blocks.L.hook_"));
        }
        assert!(matches!(
            HookPoint::parse("mlp", None),
            Err(HookError::MissingLayer(_))
        ));
        assert!(matches!(
            HookPoint::parse("layers.3.mlp", Some(4)),
            Err(HookError::ConflictingLayer {
                named: 3,
                given: 4,
                ..
            })
        ));
        let error = hook(30, HookKind::MlpOut).check_layers(30).unwrap_err();
        assert_eq!(
            error.to_string(),
            "layer 30 is out of range: the model has 30 layers (0..=29)"
        );
    }
}
