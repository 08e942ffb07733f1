//! HTTPS for the front, from a web config's `tls_server_config`: rustls on
//! the ring provider. The certificate, key and client CA files are looked
//! at again (at most once a second, when a connection arrives) and, when
//! one changed, everything is read again: cert-manager renews Secrets in
//! place, and the kubelet swaps the mounted files. A renewal that cannot
//! be read (half written) keeps the last good configuration and logs why;
//! connections already open keep theirs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use super::web_config::{ClientAuth, Pem, TlsSettings, TlsVersion};

/// How often the files are looked at, at most.
const RECHECK: Duration = Duration::from_secs(1);

/// The server side of TLS, its configuration kept current.
pub struct TlsServer {
    settings: TlsSettings,
    state: Mutex<State>,
}

struct State {
    config: Arc<ServerConfig>,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

impl std::fmt::Debug for TlsServer {
    // Settings name files only; the keys themselves stay out of any output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Reads the files and builds the configuration; any problem is an
    /// error (at the start, nothing is served without it).
    pub fn new(settings: TlsSettings) -> Result<TlsServer, String> {
        let config = build(&settings)?;
        let stamps = stamps(&settings);
        Ok(TlsServer {
            settings,
            state: Mutex::new(State {
                config: Arc::new(config),
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration for a new connection: read again first when a
    /// file changed since it was built.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let now = stamps(&self.settings);
            if now != state.stamps {
                match build(&self.settings) {
                    Ok(c) => {
                        log::info!("web config: certificate files changed; serving them");
                        state.config = Arc::new(c);
                        state.stamps = now;
                    }
                    // Tried again at the next connection after RECHECK.
                    Err(e) => log::warn!("web config: keeping the last certificate: {e}"),
                }
            }
        }
        state.config.clone()
    }
}

/// When and how big each named file is, to see a change.
fn stamps(s: &TlsSettings) -> Vec<Option<(SystemTime, u64)>> {
    [Some(&s.cert), Some(&s.key), s.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| match p {
            Pem::File(f) => std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
            Pem::Inline(_) => None,
        })
        .collect()
}

fn read(p: &Pem, what: &str) -> Result<Vec<u8>, String> {
    match p {
        Pem::File(f) => std::fs::read(f).map_err(|e| format!("{what} {f}: {e}")),
        Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
    }
}

fn certificates(p: &Pem, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(p, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// The ring provider, less what the settings leave out.
fn provider(s: &TlsSettings) -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    if !s.cipher_suites.is_empty() {
        let wanted: Vec<String> = s
            .cipher_suites
            .iter()
            .map(|n| n.trim_end_matches("_SHA256").to_string())
            .collect();
        let mut chosen: Vec<rustls::SupportedCipherSuite> = p
            .cipher_suites
            .iter()
            .copied()
            .filter(|c| c.version() == &rustls::version::TLS13)
            .collect();
        // In the configured order (the server's preference).
        for w in &wanted {
            for c in &p.cipher_suites {
                let name = format!("{:?}", c.suite());
                if c.version() == &rustls::version::TLS12
                    && name.trim_end_matches("_SHA256") == w
                    && !chosen.iter().any(|x| x.suite() == c.suite())
                {
                    chosen.push(*c);
                }
            }
        }
        p.cipher_suites = chosen;
    }
    if !s.curve_preferences.is_empty() {
        let name = |go: &str| match go {
            "X25519" => rustls::NamedGroup::X25519,
            "CurveP256" => rustls::NamedGroup::secp256r1,
            _ => rustls::NamedGroup::secp384r1,
        };
        let groups = s
            .curve_preferences
            .iter()
            .filter_map(|c| p.kx_groups.iter().find(|g| g.name() == name(c)).copied())
            .collect();
        p.kx_groups = groups;
    }
    p
}

fn build(s: &TlsSettings) -> Result<ServerConfig, String> {
    let certs = certificates(&s.cert, "cert_file")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&s.key, "key_file")?)
        .map_err(|e| format!("key_file: {e}"))?;
    let provider = Arc::new(provider(s));
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if s.min_version <= TlsVersion::Tls12 && s.max_version >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if s.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let verifier: Arc<dyn ClientCertVerifier> = match s.client_auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: s.client_auth == ClientAuth::RequireAnyClientCert,
                provider: provider.clone(),
            })
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let ca = s
                .client_ca
                .as_ref()
                .ok_or("tls_server_config: no client CA")?;
            let mut roots = RootCertStore::empty();
            for c in certificates(ca, "client_ca_file")? {
                roots.add(c).map_err(|e| format!("client_ca_file: {e}"))?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if s.client_auth == ClientAuth::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build().map_err(|e| format!("client_ca_file: {e}"))?
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file and key_file: {e}"))?;
    config.ignore_client_order = s.prefer_server_cipher_suites;
    // No ALPN: rustls would refuse a client offering only protocols we do
    // not list (curl's `http/1.0`), and HTTP/1.x needs none.
    Ok(config)
}

/// Go's RequestClientCert and RequireAnyClientCert: a certificate is asked
/// for (and, for the second, required), its signature over the handshake
/// checked, its chain not verified.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
