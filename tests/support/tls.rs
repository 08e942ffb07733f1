//! Key material made with the `openssl` command: a CA with a server
//! certificate for 127.0.0.1, and an ES256 signing key for the token server.

use super::{run, TempDir};

/// A CA and a server certificate signed by it, valid for 127.0.0.1 and ::1.
pub struct ServerCert {
    /// CA certificate (PEM file) to give to `--capath`.
    pub ca_pem: String,
    /// Server certificate chain (PEM file).
    pub cert_pem: String,
    /// Server private key (PEM file).
    pub key_pem: String,
    /// CA private key (PEM file), to sign client certificates.
    pub ca_key: String,
}

/// Creates a CA and a server certificate in `dir`.
pub fn server_cert(dir: &TempDir) -> ServerCert {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (ca_key, ca_pem, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("srv.key"),
        p("srv.csr"),
        p("srv.pem"),
        p("srv.ext"),
    );
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kube.test\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-days",
        "2",
        "-subj",
        "/CN=kiae test CA",
    ]);
    run("openssl", &a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    run("openssl", &a);
    sign(&csr, &ca_pem, &ca_key, &ext, &cert);
    ServerCert {
        ca_pem,
        cert_pem: cert,
        key_pem: key,
        ca_key,
    }
}

/// A client certificate for `cn` signed by the server's CA; returns (cert, key) PEM paths.
/// With `rsa`, the key is a PKCS#1 `RSA PRIVATE KEY`, as kind and kubeadm write them.
pub fn client_cert(dir: &TempDir, ca: &ServerCert, cn: &str, rsa: bool) -> (String, String) {
    let p = |n: &str| {
        dir.join(&format!("client-{cn}-{n}"))
            .to_string_lossy()
            .into_owned()
    };
    let (key, csr, cert, ext) = (p("key.pem"), p("csr.pem"), p("cert.pem"), p("ext"));
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let subject = format!("/CN={cn}");
    if rsa {
        run("openssl", &["genrsa", "-traditional", "-out", &key, "2048"]);
        run(
            "openssl",
            &["req", "-new", "-key", &key, "-out", &csr, "-subj", &subject],
        );
    } else {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        run("openssl", &args);
    }
    sign(&csr, &ca.ca_pem, &ca.ca_key, &ext, &cert);
    (cert, key)
}

/// Signs a certificate request with the CA, adding the extensions in `ext`.
fn sign(csr: &str, ca_pem: &str, ca_key: &str, ext: &str, cert: &str) {
    let args = [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_pem,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        ext,
    ];
    run("openssl", &args);
}

/// An ECDSA P-256 key for signing tokens, and a self-signed certificate for
/// the registry's `rootcertbundle`.
pub struct SigningKey {
    /// PKCS#8 DER private key, for ring.
    pub pkcs8: Vec<u8>,
    /// The libtrust key ID of the public key: what the registry expects in `kid`.
    pub kid: String,
    /// The certificate (PEM file).
    pub cert_pem: String,
}

/// Creates a signing key and certificate in `dir`.
pub fn signing_key(dir: &TempDir) -> SigningKey {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (key, cert, p8, spki) = (
        p("signing.key"),
        p("signing.pem"),
        p("signing.p8"),
        p("signing.spki"),
    );
    run(
        "openssl",
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key,
        ],
    );
    run(
        "openssl",
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER", "-out", &p8,
        ],
    );
    run(
        "openssl",
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            "/CN=kiae token issuer",
        ],
    );
    run(
        "openssl",
        &[
            "pkey", "-in", &key, "-pubout", "-outform", "DER", "-out", &spki,
        ],
    );
    let spki = std::fs::read(&spki).unwrap();
    SigningKey {
        pkcs8: std::fs::read(&p8).unwrap(),
        kid: libtrust_key_id(&spki),
        cert_pem: cert,
    }
}

/// base32 of the first 240 bits of SHA-256(SPKI), in 12 groups of 4.
fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let bytes = &hash.as_ref()[..30];
    let mut bits: u64 = 0;
    let mut n = 0;
    let mut out = String::new();
    for &b in bytes {
        bits = (bits << 8) | b as u64;
        n += 8;
        while n >= 5 {
            n -= 5;
            out.push(ALPHABET[((bits >> n) & 31) as usize] as char);
        }
    }
    let groups: Vec<&str> = (0..out.len()).step_by(4).map(|i| &out[i..i + 4]).collect();
    groups.join(":")
}
