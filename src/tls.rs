//! Outgoing HTTP clients (parties, the JWKS endpoint, the OTLP collector), all
//! on one TLS setup: rustls with *ring*, the provider sqlx and lettre already
//! build, rather than reqwest's default aws-lc-rs (a second crypto library, C
//! built with cmake). Server certificates are checked against the system's
//! roots (`rustls-platform-verifier`; the image has Debian's ca-certificates)
//! plus any CA a setting adds.

/// Installs *ring* as the process's rustls provider, once; reqwest built with
/// `rustls-no-provider` refuses to build a client before that.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only when some provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The builder every async client starts from.
pub fn client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// The builder the OTLP exporter's blocking client starts from.
pub fn blocking_client() -> reqwest::blocking::ClientBuilder {
    install_crypto_provider();
    reqwest::blocking::Client::builder()
}
