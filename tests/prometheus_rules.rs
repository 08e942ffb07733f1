//! The alert rules of deploy/prometheus-operator/prometheusrule.yaml,
//! checked and unit-tested by the real promtool (Debian's `prometheus`
//! package, installed by tests/run): tests/prometheus/alerts_test.yaml.

mod support;

use std::process::Command;

use k8s_image_availability_exporter::sys::yaml::parse_yaml_documents;
use support::TempDir;

/// Writes the PrometheusRule's groups as a plain Prometheus rule file.
pub fn rule_file(dir: &TempDir) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!(
        "{root}/deploy/prometheus-operator/prometheusrule.yaml"
    ))
    .unwrap();
    let doc = &parse_yaml_documents(&text).unwrap()[0];
    dir.write(
        "rules.yaml",
        serde_json::json!({ "groups": doc["spec"]["groups"] }).to_string(),
    )
}

fn promtool(args: &[&str], dir: &TempDir) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("promtool (Debian package prometheus; tests/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = TempDir::new("promtool");
    rule_file(&dir);
    let tests = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/prometheus/alerts_test.yaml"
    ))
    .unwrap();
    dir.write("alerts_test.yaml", tests);
    let checked = promtool(&["check", "rules", "rules.yaml"], &dir);
    assert!(checked.contains("SUCCESS: 14 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yaml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}
