//! The README documents every flag with the default `--help` states, and
//! names no flag the binary lacks, so the two never drift apart.

mod support;

use std::collections::BTreeMap;

fn help() -> String {
    let out = std::process::Command::new(support::exporter_bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// flag -> default, from `--help`.
fn help_flags() -> BTreeMap<String, String> {
    let text = help();
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text
        .lines()
        .skip_while(|l| !l.starts_with("Options:"))
        .skip(1)
    {
        let trimmed = line.trim_start();
        if line.starts_with("  --") {
            if let Some((f, d)) = current.take() {
                out.insert(f, d);
            }
            let flag = trimmed
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(',')
                .to_string();
            let rest = trimmed[flag.len()..].trim().to_string();
            current = Some((flag, rest));
        } else if let Some((_, d)) = current.as_mut() {
            d.push(' ');
            d.push_str(trimmed);
        }
    }
    if let Some((f, d)) = current {
        out.insert(f, d);
    }
    out.into_iter()
        .filter(|(f, _)| f != "--help")
        .map(|(f, d)| {
            let default = d
                .split("Defaults to ")
                .nth(1)
                .unwrap_or_else(|| panic!("{f}: --help states no default: {d}"));
            (f, default.trim().trim_end_matches('.').to_string())
        })
        .collect()
}

/// flag -> default, from the README's flag table.
fn readme_flags() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    text.lines()
        .skip_while(|l| *l != "## Flags")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let flag = cells[0]
                .trim_start_matches("| `")
                .split([' ', '`'])
                .next()
                .unwrap()
                .to_string();
            (flag, cells[1].replace('`', "").trim().to_string())
        })
        .collect()
}

#[test]
fn readme_lists_every_flag_with_its_default() {
    let help = help_flags();
    let readme = readme_flags();
    assert!(help.len() > 25, "{help:?}");
    for (flag, default) in &help {
        let documented = readme
            .get(flag)
            .unwrap_or_else(|| panic!("README's flag table lacks {flag}"));
        assert_eq!(
            documented, default,
            "{flag}: README says {documented:?}, --help says {default:?}"
        );
    }
    for flag in readme.keys() {
        assert!(
            help.contains_key(flag),
            "README documents {flag}, which the binary does not have"
        );
    }
}

#[test]
fn readme_starts_with_the_run_and_test_commands() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let head: String = text.lines().take(4).collect::<Vec<_>>().join("\n");
    assert!(head.contains("cargo run --release --"), "{head}");
    assert!(head.contains("bash tests/run"), "{head}");
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(
        ci.contains("bash tests/run"),
        ".ci/run must run the README's test command"
    );
}

/// The Development section names every fuzz target there is.
#[test]
fn readme_lists_every_fuzz_target() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let fuzzing = readme
        .split("### Fuzzing")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("a Fuzzing section");
    for t in k8s_image_availability_exporter::fuzzing::TARGETS {
        assert!(
            fuzzing.contains(&format!("`{t}`")),
            "README's Fuzzing section does not name {t}"
        );
    }
}
