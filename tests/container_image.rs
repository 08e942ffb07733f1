//! The container image as users build and run it: the README's offline
//! commands (static binaries for linux/amd64 and linux/arm64 with
//! deploy/build-static, then one `buildah build` of both platforms into a
//! manifest list, with Debian's buildah: vfs storage, chroot isolation, no
//! daemon, no network, then `buildah manifest push` of it as an OCI image
//! index to the real Docker Distribution registry); then, read back from
//! the registry, each platform's config and contents, each entrypoint run
//! (amd64 from the image's own root as uid 65534, arm64 under
//! qemu-user), and the exporter's own platform verdicts on the index.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use support::registry::{Auth, Registry};
use support::TempDir;

const REPOSITORY: &str = "k8s-image-availability-exporter";

/// The commands of the fenced block under "### Building the container".
fn readme_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Building the container")
        .nth(1)
        .expect("README has a \"Building the container\" section");
    let block = section
        .split("```")
        .nth(1)
        .expect("a fenced block in that section");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs a command line with `sh` in the repository root; its stdout.
fn sh(line: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new("sh")
        .args(["-c", line])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    assert!(
        out.status.success(),
        "{line}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file and directory under `root`, relative, with file sizes.
fn tree(root: &Path, rel: &str, out: &mut BTreeMap<String, u64>) {
    for entry in std::fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{rel}{}", entry.file_name().to_string_lossy());
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.insert(format!("{name}/"), 0);
            tree(root, &format!("{name}/"), out);
        } else {
            out.insert(name, meta.len());
        }
    }
}

/// A registry answer over TLS: a manifest (with `accept`) or a blob.
fn get(reg: &Registry, path: &str, accept: &str) -> Vec<u8> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let ca = Certificate::from_pem(&std::fs::read(reg.ca_pem()).unwrap())
        .unwrap()
        .to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&[ca]))
                .build(),
        )
        .build()
        .new_agent();
    let mut r = agent
        .get(format!("https://{}{path}", reg.host))
        .header("Accept", accept)
        .call()
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap()
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn the_readme_builds_an_image_index_for_amd64_and_arm64_that_runs_and_passes_its_own_check() {
    assert!(
        Command::new("buildah").arg("--version").output().is_ok(),
        "buildah is not installed (Debian package buildah; tests/run installs it as root)"
    );
    // buildah keeps its images in a directory of this test (storage.conf),
    // not in the machine's store; $REGISTRY is where the README pushes: a
    // TLS registry whose CA buildah finds where containers-certs.d(5) says
    // (as root: /etc/containers/certs.d/HOST:PORT/; `buildah manifest push`
    // ignores registries.conf's `insecure`), removed afterwards.
    let reg = Registry::start_tls(Auth::None);
    let certs = CertsDir::trust(&reg.host, reg.ca_pem());
    let dir = TempDir::new("buildah");
    let conf = dir.write(
        "storage.conf",
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n",
            dir.path().display()
        ),
    );
    let env = [
        ("CONTAINERS_STORAGE_CONF", conf.as_str()),
        ("REGISTRY", reg.host.as_str()),
    ];
    let commands = readme_commands();
    assert_eq!(commands.len(), 4, "{commands:?}");
    assert_eq!(commands[0], "deploy/build-static amd64");
    assert_eq!(commands[1], "deploy/build-static arm64");
    assert!(
        commands[2].starts_with("buildah build ")
            && commands[2].contains("--platform linux/amd64,linux/arm64")
    );
    assert!(
        commands[3].starts_with("buildah manifest push ") && commands[3].contains("--format oci")
    );
    let mut times = Vec::new();
    for c in &commands {
        let t = Instant::now();
        sh(c, &env);
        times.push(t.elapsed());
    }

    // The index: exactly linux/amd64 and linux/arm64.
    let index: Value = serde_json::from_slice(&get(
        &reg,
        &format!("/v2/{REPOSITORY}/manifests/0.1.0"),
        OCI_INDEX,
    ))
    .unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX, "{index}");
    let entries = index["manifests"].as_array().unwrap();
    let mut platforms: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["platform"]["os"].as_str().unwrap(),
                e["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    let origin = Command::new("git")
        .args(["remote", "get-url", "origin"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut sizes = Vec::new();
    for e in entries {
        let arch = e["platform"]["architecture"].as_str().unwrap();
        let digest = e["digest"].as_str().unwrap();
        let manifest: Value = serde_json::from_slice(&get(
            &reg,
            &format!("/v2/{REPOSITORY}/manifests/{digest}"),
            OCI_MANIFEST,
        ))
        .unwrap();
        // The config names its own platform; user, entrypoint, labels.
        let config: Value = serde_json::from_slice(&get(
            &reg,
            &format!(
                "/v2/{REPOSITORY}/blobs/{}",
                manifest["config"]["digest"].as_str().unwrap()
            ),
            "*/*",
        ))
        .unwrap();
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["os"], "linux");
        let c = &config["config"];
        assert_eq!(c["User"], "65534:65534", "{c}");
        assert_eq!(
            c["Entrypoint"],
            serde_json::json!(["/k8s-image-availability-exporter"])
        );
        assert!(c.get("Cmd").is_none_or(|c| c.is_null()), "{c}");
        let labels = &c["Labels"];
        assert_eq!(
            labels["org.opencontainers.image.version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(labels["org.opencontainers.image.licenses"], "MIT");
        assert_eq!(
            labels["org.opencontainers.image.title"],
            "k8s-image-availability-exporter"
        );
        assert_eq!(
            labels["org.opencontainers.image.description"],
            env!("CARGO_PKG_DESCRIPTION")
        );
        // The README passes the clone's origin (none in a clone without one).
        assert_eq!(labels["org.opencontainers.image.source"], origin.as_str());
        // One layer: the binary and the plugin directory, nothing else.
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{manifest}");
        let tarball = dir.write(
            &format!("{arch}.tar.gz"),
            get(
                &reg,
                &format!(
                    "/v2/{REPOSITORY}/blobs/{}",
                    layers[0]["digest"].as_str().unwrap()
                ),
                "*/*",
            ),
        );
        let root = dir.join(&format!("root-{arch}"));
        std::fs::create_dir_all(&root).unwrap();
        sh(&format!("tar -xzf {tarball} -C {}", root.display()), &[]);
        let mut files = BTreeMap::new();
        tree(&root, "", &mut files);
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "credential-providers/",
                "credential-providers/README",
                "k8s-image-availability-exporter"
            ],
            "{arch}"
        );
        let readme = std::fs::read_to_string(root.join("credential-providers/README")).unwrap();
        assert!(
            readme.contains(&format!("linux/{arch}")),
            "{arch}'s own plugin folder: {readme}"
        );
        let size: u64 = files.values().sum();
        assert!(size <= 12 << 20, "{size} bytes");
        sizes.push((arch.to_string(), size));
        let bin = root.join("k8s-image-availability-exporter");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&bin).unwrap().permissions(),
        );
        assert_eq!(
            mode & 0o555,
            0o555,
            "readable and executable by anyone: {mode:o}"
        );
        // Its own platform's static binary.
        let kind = sh(&format!("file -b {}", bin.display()), &[]);
        let machine = if arch == "amd64" {
            "x86-64"
        } else {
            "ARM aarch64"
        };
        assert!(
            kind.contains(machine) && kind.contains("static"),
            "{arch}: {kind}"
        );
        // It runs: amd64 from the image's own root as uid 65534 (no libc
        // files, no shell, no /etc); arm64 under qemu-user, checking an
        // image over TLS.
        let target = Registry::start_tls(Auth::None);
        target.push("team/app", "v1");
        let image = target.image("team/app:v1");
        let out = if arch == "amd64" {
            std::fs::copy(target.ca_pem(), root.join("ca.pem")).unwrap();
            let run = |args: &str| {
                sh(
                    &format!(
                        "chroot --userspec=65534:65534 {} /k8s-image-availability-exporter {args}",
                        root.display()
                    ),
                    &[],
                )
            };
            assert!(run("--version").contains(env!("CARGO_PKG_VERSION")));
            run(&format!("--capath /ca.pem --output json check {image}"))
        } else {
            let run = |args: &str| {
                sh(
                    &format!("qemu-aarch64-static {} {args}", bin.display()),
                    &[],
                )
            };
            assert!(run("--version").contains(env!("CARGO_PKG_VERSION")));
            run(&format!(
                "--capath {} --output json check {image}",
                target.ca_pem()
            ))
        };
        assert!(out.contains(r#""status":"available""#), "{arch}: {out}");
    }

    // The exporter's own platform check on the pushed index.
    let pushed = reg.image(&format!("{REPOSITORY}:0.1.0"));
    for (platform, want) in [
        ("linux/amd64", "available"),
        ("linux/arm64", "available"),
        ("linux/s390x", "platform_unavailable"),
    ] {
        let check = support::check(&[
            "--capath",
            reg.ca_pem(),
            "--platform",
            platform,
            "check",
            &pushed,
        ]);
        check.assert_status(&pushed, want);
    }
    println!(
        "image index: {sizes:?} bytes, one layer each; build-static amd64 {:.1?}, arm64 {:.1?}, buildah build {:.1?}, push {:.1?}",
        times[0], times[1], times[2], times[3]
    );
    drop(certs);
}

/// A registry's CA where containers/image looks for it, removed on drop.
struct CertsDir(std::path::PathBuf);

impl CertsDir {
    fn trust(host: &str, ca_pem: &str) -> CertsDir {
        let dir = Path::new("/etc/containers/certs.d").join(host);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!("{}: {e} (the test runs as root, as CI does)", dir.display())
        });
        std::fs::copy(ca_pem, dir.join("ca.crt")).unwrap();
        CertsDir(dir)
    }
}

impl Drop for CertsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
