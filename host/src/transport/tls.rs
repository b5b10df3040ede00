//! TLS for `https://` and `wss://`: rustls (ring) from PEM files, reloaded
//! when the files change.
//!
//! Every accepted connection takes the configuration current at its
//! handshake; a renewed certificate applies to new connections without a
//! restart, and connections already open keep theirs. A pair that fails to
//! load is logged and the previous one stays in use.

use crate::config::TlsConfig;
use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub struct Certificates {
    config: TlsConfig,
    current: ArcSwap<ServerConfig>,
}

impl Certificates {
    /// Load the configured pair; an error names the file and the problem.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Arc<Certificates>> {
        let server = server_config(&config.cert, &config.key)?;
        Ok(Arc::new(Certificates { config: config.clone(), current: ArcSwap::from_pointee(server) }))
    }

    /// An acceptor with the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Check the files every `reload_interval_ms` until `stop`, and load
    /// the pair again when either changed.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_millis(self.config.reload_interval_ms.max(100));
        let mut seen = stamps(&self.config);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = stamps(&self.config);
            if now == seen {
                continue;
            }
            seen = now;
            match server_config(&self.config.cert, &self.config.key) {
                Ok(server) => {
                    self.current.store(Arc::new(server));
                    tracing::info!(cert = %self.config.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => tracing::error!("TLS certificate not reloaded; the previous one stays in use: {e:#}"),
            }
        }
    }
}

/// Modification time and size of both files: what a change shows as.
fn stamps(config: &TlsConfig) -> [Option<(SystemTime, u64)>; 2] {
    let stamp = |path: &Path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [stamp(&config.cert), stamp(&config.key)]
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not make a usable pair")?;
    // WebSockets upgrade over HTTP/1.1; offering h2 would take browsers there.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
