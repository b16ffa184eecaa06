//! The process's one TLS crypto provider.

/// Installs rustls's `ring` provider as the process default, once.
///
/// The workspace keeps a single crypto backend (ring); with reqwest's `rustls-no-provider`
/// feature, building an HTTPS client before a default provider is installed panics.
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
