//! The SAE file formats researchers bring.

pub mod mlxterp;
