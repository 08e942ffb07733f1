//! Proxies from the environment as Go reads them, for registries and the
//! apiserver alike, through a real forward proxy on 127.0.0.1 that alone
//! knows the names `registry.test` and `kube.test` (nothing leaves the
//! machine, and a request that bypassed the proxy could not succeed).

mod support;

use std::process::Command;

use support::apiserver::{FakeApiServer, ServerAuth};
use support::proxy::Proxy;
use support::registry::{Auth, Registry};
use support::{exporter_bin, TempDir};

fn exporter(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(exporter_bin());
    cmd.args(args);
    for v in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn registry_requests_go_through_the_proxy_for_their_scheme() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let port = reg.host.rsplit_once(':').unwrap().1;
    let name = format!("registry.test:{port}");
    let image = format!("{name}/team/app:v1");
    let proxy = Proxy::start();
    let plain = Proxy::start();
    // HTTPS_PROXY without a scheme is read as http://, as Go does; NO_PROXY
    // entries that do not match (another port, another domain, a CIDR of
    // addresses) leave the proxy in use; ALL_PROXY is not Go's and is ignored.
    let bare = proxy.url.trim_start_matches("http://");
    let (code, stdout, stderr) = exporter(
        &[
            "--output",
            "json",
            "--plain-http-registries",
            &name,
            "check",
            &image,
        ],
        &[
            ("HTTP_PROXY", &plain.url),
            ("HTTPS_PROXY", bare),
            ("ALL_PROXY", "http://127.0.0.1:1"),
            ("NO_PROXY", "registry.test:1,.other.test,10.0.0.0/8"),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let row: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(row["status"], "available");
    assert_eq!(
        proxy.seen(),
        [format!("CONNECT {name}")],
        "https is tried through HTTPS_PROXY first"
    );
    // Plain http goes through HTTP_PROXY (as a CONNECT tunnel: ureq's one
    // proxy mode, where Go would send the request in absolute form).
    assert!(
        plain.seen().contains(&format!("CONNECT {name}")),
        "{:?}",
        plain.seen()
    );

    // NO_PROXY entries that match are unit-tested (src/registry/proxy.rs): a direct
    // request to a name only the proxy knows would need a DNS lookup, and
    // tests send nothing off this machine.
}

#[test]
fn the_apiserver_is_reached_through_https_proxy() {
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["p".into()]));
    api.deploy("a", "web", "registry.invalid/app:1");
    let kc = api.kubeconfig(&FakeApiServer::token_user("p"));
    let text = std::fs::read_to_string(&kc).unwrap();
    let port = api.url.rsplit_once(':').unwrap().1;
    let dir = TempDir::new("proxied-kubeconfig");
    let proxied = dir.write(
        "kubeconfig",
        text.replace(&api.url, &format!("https://kube.test:{port}")),
    );
    let proxy = Proxy::start();
    let (code, _, stderr) = exporter(
        &[
            "--kubeconfig",
            &proxied,
            "--once",
            "--no-secrets",
            "--ignored-images",
            "registry.invalid",
        ],
        &[("HTTPS_PROXY", &proxy.url)],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        proxy.seen().contains(&format!("CONNECT kube.test:{port}")),
        "{:?}",
        proxy.seen()
    );
}
