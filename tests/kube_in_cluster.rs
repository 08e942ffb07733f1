//! In-cluster configuration with a rotating service account token. Its own
//! test binary: it sets process-wide environment variables.

mod support;

use std::sync::Arc;

use k8s_image_availability_exporter::inventory::InventoryConfig;
use k8s_image_availability_exporter::kube::client::ApiClient;
use k8s_image_availability_exporter::kube::config::{discover, Auth, SERVICE_ACCOUNT_DIR_ENV};
use k8s_image_availability_exporter::kube::resources::{Kind, Resource};
use k8s_image_availability_exporter::kube::watch::Stream;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::cluster::{fast_watch, registry_config, Watching};
use support::TempDir;

#[test]
fn in_cluster_token_rotation() {
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["sa-token-1".into()]));
    let sa = TempDir::new("sa");
    std::fs::copy(&api.tls.ca_pem, sa.join("ca.crt")).unwrap();
    let token = sa.write("token", "sa-token-1\n");
    let home = TempDir::new("home");
    let port = api.url.rsplit(':').next().unwrap().to_string();
    std::env::remove_var("KUBECONFIG");
    std::env::set_var("HOME", home.path());
    std::env::set_var("KUBERNETES_SERVICE_HOST", "127.0.0.1");
    std::env::set_var("KUBERNETES_SERVICE_PORT", &port);
    std::env::set_var(SERVICE_ACCOUNT_DIR_ENV, sa.path());

    let cluster = discover(None, None).expect("in-cluster config");
    assert_eq!(cluster.server, api.url);
    assert!(matches!(cluster.auth, Auth::TokenFile(_)));
    let client = Arc::new(ApiClient::new(cluster).unwrap());
    api.deploy("a", "one", "reg.io/one:1");
    let streams = vec![Stream {
        resource: Resource::Workload(Kind::Deployment),
        namespace: None,
        label_selector: None,
    }];
    let w = Watching::with_client(
        client,
        streams,
        fast_watch(),
        InventoryConfig {
            registry: Some(registry_config()),
            ..Default::default()
        },
    );
    w.wait_synced();

    // The kubelet rotates the projected token; the old one stops working.
    std::fs::write(&token, "sa-token-2\n").unwrap();
    api.set_tokens(&["sa-token-2"]);
    api.drop_watches();
    api.deploy("a", "two", "reg.io/two:1");
    w.wait_for("the object created after rotation", |s| s.len() == 2);
    assert!(api.requests().iter().any(|r| r.user == "token:sa-token-2"));
    assert!(
        api.requests().iter().any(|r| r.status == 401),
        "the old token was refused, then the file re-read"
    );
}
