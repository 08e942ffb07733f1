//! The container image as users build and run it: the README's offline
//! commands (a static `cargo build`, then `buildah build`, with Debian's
//! buildah: vfs storage, chroot isolation, no daemon, no network), then the
//! image's config and contents, its entrypoint run from the image's own
//! root as uid 65534, a push to the real Docker Distribution registry, and
//! the exporter's own verdict on the pushed image.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::registry::{Auth, Registry};
use support::TempDir;

const IMAGE: &str = "k8s-image-availability-exporter:0.1.0";

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

#[test]
fn the_readme_builds_an_image_that_runs_as_nobody_and_passes_its_own_check() {
    assert!(
        Command::new("buildah").arg("--version").output().is_ok(),
        "buildah is not installed (Debian package buildah; tests/run installs it as root)"
    );
    // The README's commands, unchanged; buildah keeps its images in a
    // directory of this test (storage.conf), not in the machine's store.
    let dir = TempDir::new("buildah");
    let conf = dir.write(
        "storage.conf",
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n",
            dir.path().display()
        ),
    );
    let env = [("CONTAINERS_STORAGE_CONF", conf.as_str())];
    let commands = readme_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(
        commands[0].starts_with("RUSTFLAGS='-C target-feature=+crt-static' cargo build --release")
    );
    assert!(commands[1].starts_with("buildah build "));
    let t = Instant::now();
    sh(&commands[0], &env);
    let cargo_time = t.elapsed();
    let t = Instant::now();
    sh(&commands[1], &env);
    let build_time = t.elapsed();
    let buildah = |args: &str| sh(&format!("buildah --storage-driver vfs {args}"), &env);

    // The config: user, entrypoint, labels, one layer.
    let inspect: serde_json::Value =
        serde_json::from_str(&buildah(&format!("inspect --type image {IMAGE}"))).unwrap();
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"], "65534:65534", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/k8s-image-availability-exporter"])
    );
    assert!(config.get("Cmd").is_none_or(|c| c.is_null()), "{config}");
    let labels = &config["Labels"];
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
    let origin = Command::new("git")
        .args(["remote", "get-url", "origin"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert_eq!(labels["org.opencontainers.image.source"], origin.as_str());
    assert_eq!(inspect["OCIv1"]["os"], "linux");
    assert_eq!(inspect["OCIv1"]["architecture"], "amd64");
    let layers = inspect["OCIv1"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(layers, 1, "{}", inspect["OCIv1"]["rootfs"]);

    // Its contents: the binary and the plugin directory, nothing else.
    let ctr = buildah(&format!("from --pull-never {IMAGE}"))
        .trim()
        .to_string();
    let mnt = buildah(&format!("mount {ctr}")).trim().to_string();
    let root = Path::new(&mnt);
    let mut files = BTreeMap::new();
    tree(root, "", &mut files);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "credential-providers/",
            "credential-providers/README",
            "k8s-image-availability-exporter"
        ]
    );
    let size: u64 = files.values().sum();
    assert!(size <= 12 << 20, "{size} bytes");
    let bin = root.join("k8s-image-availability-exporter");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&bin).unwrap().permissions());
    assert_eq!(
        mode & 0o555,
        0o555,
        "readable and executable by anyone: {mode:o}"
    );

    // The entrypoint, from the image's own root, as uid 65534: no libc
    // files, no shell, no /etc.
    let run = |args: &str| {
        sh(
            &format!("chroot --userspec=65534:65534 {mnt} /k8s-image-availability-exporter {args}"),
            &[],
        )
    };
    let version = run("--version");
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let out = run(&format!(
        "--allow-plain-http --output json check {}",
        reg.image("team/app:v1")
    ));
    assert!(out.contains(r#""status":"available""#), "{out}");
    buildah(&format!("umount {ctr}"));
    buildah(&format!("rm {ctr}"));

    // Pushed to the real registry, the exporter says it can be pulled.
    let pushed = reg.image("kiae/exporter:0.1.0");
    let t = Instant::now();
    buildah(&format!(
        "push --tls-verify=false {IMAGE} docker://{pushed}"
    ));
    let push_time = t.elapsed();
    let check = support::check(&[
        "--allow-plain-http",
        "--platform",
        "linux/amd64",
        "check",
        &pushed,
    ]);
    check.assert_status(&pushed, "available");
    println!(
        "image: {size} bytes in {layers} layer; cargo build {cargo_time:.1?}, buildah build {build_time:.1?}, push {push_time:.1?}"
    );
}
