//! `--web.config.file`, checked by a real Prometheus (Debian's package):
//! it scrapes over HTTPS with a client certificate and basic auth; a wrong
//! password and a missing client certificate are refused; a certificate
//! rotated on disk is served to the next connection while scrapes go on;
//! the probes' endpoints stay open; bad configs stop the start.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, FAST};
use support::prometheus::Prometheus;
use support::registry::{Auth, Registry};
use support::tls::{client_cert, server_cert, ServerCert};
use support::{exporter_bin, wait_until, TempDir};

/// A bcrypt hash of `password`, as `htpasswd -B` writes it.
fn bcrypt(password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbBC", "10", "prometheus", password])
        .output()
        .expect("htpasswd (Debian package apache2-utils; tests/run installs it)");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .split_once(':')
        .unwrap()
        .1
        .to_string()
}

/// An HTTPS agent trusting `ca`, with a client certificate when given.
fn agent(ca: &str, client: Option<(&str, &str)>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let ca = Certificate::from_pem(&std::fs::read(ca).unwrap())
        .unwrap()
        .to_owned();
    let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca]));
    if let Some((cert, key)) = client {
        let cert = Certificate::from_pem(&std::fs::read(cert).unwrap())
            .unwrap()
            .to_owned();
        let key = PrivateKey::from_pem(&std::fs::read(key).unwrap())
            .unwrap()
            .to_owned();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls.build())
        .build()
        .new_agent()
}

/// The SHA-256 fingerprint of the certificate a TLS server at `addr`
/// presents to a new connection, read by `openssl s_client`.
fn served_fingerprint(addr: &str, ca: &ServerCert, client: (&str, &str)) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -CAfile {} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
            ca.ca_pem, client.0, client.1
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn fingerprint(cert: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", cert])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn prometheus_scrapes_over_https_with_basic_auth_and_client_certificates() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["wc".into()]));
    api.deploy("w", "app", &reg.image("team/app:v1"));
    let kc = api.kubeconfig(&FakeApiServer::token_user("wc"));

    let dir = TempDir::new("webcfg");
    let ca = server_cert(&dir);
    let (cert, key) = client_cert(&dir, &ca, "prometheus", false);
    // The served certificate lives in its own files, to be rotated.
    let served_cert = dir.write("tls.crt", std::fs::read(&ca.cert_pem).unwrap());
    let served_key = dir.write("tls.key", std::fs::read(&ca.key_pem).unwrap());
    let web = dir.write(
        "web.yml",
        format!(
            "tls_server_config:\n  cert_file: {served_cert}\n  key_file: {served_key}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\nbasic_auth_users:\n  prometheus: '{}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            ca.ca_pem,
            bcrypt("scrape-secret")
        ),
    );
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend([
        "--plain-http-registries",
        &reg.host,
        "--web.config.file",
        &web,
    ]);
    let e = Exporter::start_with(&kc, &args, "https", agent(&ca.ca_pem, Some((&cert, &key))));
    // The probes' endpoints need no credentials (readiness once the first
    // lists are in); the rest does.
    assert_eq!(e.get("/healthz").0, 200);
    wait_until("ready", Duration::from_secs(20), || {
        e.get("/readyz").0 == 200
    });
    let refused = e
        .agent()
        .get(format!("https://{}/metrics", e.addr))
        .call()
        .unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    assert_eq!(
        refused
            .headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("deny")
    );
    // Plain HTTP is not served on the TLS port.
    let plain = support::local_agent()
        .get(format!("http://{}/healthz", e.addr))
        .call();
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    // No client certificate: the handshake fails, even for /healthz.
    let anonymous = agent(&ca.ca_pem, None)
        .get(format!("https://{}/healthz", e.addr))
        .call();
    assert!(anonymous.is_err(), "{anonymous:?}");

    let job = |name: &str, password: &str, with_cert: bool| {
        let client = if with_cert {
            format!("\n      cert_file: {cert}\n      key_file: {key}")
        } else {
            String::new()
        };
        format!(
            "  - job_name: {name}\n    scheme: https\n    honor_labels: true\n    tls_config:\n      ca_file: {}{client}\n    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: [\"{}\"]\n",
            ca.ca_pem, e.addr
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}",
        job("good", "scrape-secret", true),
        job("wrong-password", "guess", true),
        job("no-client-cert", "scrape-secret", false),
    );
    let p = Prometheus::start(&config, &[]);
    let up = |job: &str| {
        let (_, result, _) = p.query(&format!("up{{job=\"{job}\"}}"));
        result
            .first()
            .and_then(|r| r["value"][1].as_str().map(str::to_string))
    };
    wait_until("the three jobs scraped", Duration::from_secs(30), || {
        up("good").is_some() && up("wrong-password").is_some() && up("no-client-cert").is_some()
    });
    wait_until("the good job up", Duration::from_secs(30), || {
        up("good").as_deref() == Some("1")
    });
    assert_eq!(up("wrong-password").as_deref(), Some("0"));
    assert_eq!(up("no-client-cert").as_deref(), Some("0"));
    wait_until("the verdict in Prometheus", Duration::from_secs(30), || {
        let (_, r, _) =
            p.query("k8s_image_availability_exporter_available{job=\"good\",name=\"app\"}");
        r.first().and_then(|r| r["value"][1].as_str()) == Some("1")
    });

    // cert-manager renews the certificate in place: a new key, the same CA.
    let before = served_fingerprint(&e.addr, &ca, (&cert, &key));
    assert_eq!(before, fingerprint(&served_cert));
    let renewed = server_cert_from(&dir, &ca);
    std::fs::rename(&renewed.1, &served_key).unwrap();
    std::fs::rename(&renewed.0, &served_cert).unwrap();
    wait_until(
        "the renewed certificate served",
        Duration::from_secs(10),
        || served_fingerprint(&e.addr, &ca, (&cert, &key)) == fingerprint(&served_cert),
    );
    assert_ne!(before, fingerprint(&served_cert));
    // Scrapes went on across the renewal.
    let scrapes = |job: &str| {
        let (_, r, _) = p.query(&format!("count_over_time(up{{job=\"{job}\"}}[1h])"));
        r.first()
            .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (n, _) = (scrapes("good"), ());
    wait_until("two more good scrapes", Duration::from_secs(20), || {
        scrapes("good") >= n + 2.0 && up("good").as_deref() == Some("1")
    });
    let log = e.log();
    assert!(
        !log.contains("scrape-secret") && !log.contains("guess"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// A new server key and certificate signed by `ca`'s CA: (cert, key) paths.
fn server_cert_from(dir: &TempDir, ca: &ServerCert) -> (String, String) {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (key, csr, cert, ext) = (p("new.key"), p("new.csr"), p("new.crt"), p("new.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    support::run(
        "openssl",
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    support::run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca.ca_pem,
            "-CAkey",
            &ca.ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
    (cert, key)
}

/// Runs the binary with a web config; its exit code and stderr.
fn start_with_config(text: &str) -> (Option<i32>, String) {
    let dir = TempDir::new("badweb");
    let web = dir.write("web.yml", text);
    let out = Command::new(exporter_bin())
        .args(["--kubeconfig", "/nonexistent", "--web.config.file", &web])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_web_configs_stop_the_start() {
    let dir = TempDir::new("badcerts");
    let not_pem = dir.write("not.pem", "not a certificate");
    for (text, says) in [
        ("tls_server_config:\n  cert_file: /x\n  key_file: /y\n  unknown: 1\n", "unknown key tls_server_config.unknown"),
        ("basic_auth_users:\n  admin: hunter2\n", "not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: /nonexistent/tls.crt\n  key_file: /nonexistent/tls.key\n", "/nonexistent/tls.crt"),
        ("tls_server_config: [\n", "not YAML"),
        ("tls_server_config:\n  cert_file: /x\n", "missing key_file"),
    ] {
        let (code, stderr) = start_with_config(text);
        assert_eq!(code, Some(2), "{text}: {stderr}");
        assert!(stderr.contains(says) && stderr.contains("--web.config.file"), "{text}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    // A file that is there but holds no certificate: no fallback to HTTP.
    let (code, stderr) = start_with_config(&format!(
        "tls_server_config:\n  cert_file: {not_pem}\n  key_file: {not_pem}\n"
    ));
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("cert_file"), "{stderr}");
}
