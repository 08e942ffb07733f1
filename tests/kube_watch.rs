//! The Kubernetes half against the fake apiserver: paging, every watch event,
//! resumes after dropped streams, relists after 410, bookmarks, auth plugins,
//! namespace scoping, forbidden and malformed Secrets, and which credentials
//! each workload gets.

mod support;

use std::time::Duration;

use k8s_image_availability_exporter::inventory::InventoryConfig;
use k8s_image_availability_exporter::kube::resources::{Kind, Resource};
use k8s_image_availability_exporter::kube::watch::{Stream, WatchOptions};
use support::apiserver::{FakeApiServer, ServerAuth};
use support::cluster::{fast_watch, registry_config, Watching};
use support::objects::*;
use support::{wait_until, TempDir};

fn all_streams(namespace: Option<&str>) -> Vec<Stream> {
    let mut r: Vec<Resource> = Kind::ALL.iter().map(|k| Resource::Workload(*k)).collect();
    r.extend([
        Resource::ServiceAccounts,
        Resource::DockerConfigJsonSecrets,
        Resource::DockerCfgSecrets,
    ]);
    r.into_iter()
        .map(|resource| Stream {
            resource,
            namespace: namespace.map(str::to_string),
            label_selector: None,
        })
        .collect()
}

/// Deployments only, cluster-wide.
fn deployments() -> Vec<Stream> {
    vec![Stream {
        resource: Resource::Workload(Kind::Deployment),
        namespace: None,
        label_selector: None,
    }]
}

/// Watches that outlive the test, so only the test's hooks end them.
fn long_watch() -> WatchOptions {
    WatchOptions {
        watch_timeout: Duration::from_secs(30),
        ..fast_watch()
    }
}

fn inv_config() -> InventoryConfig {
    InventoryConfig {
        registry: Some(registry_config()),
        ..Default::default()
    }
}

fn server() -> (FakeApiServer, String) {
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["t0k3n".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("t0k3n"));
    (api, kc)
}

#[test]
fn initial_sync_pages_through_many_objects() {
    let (api, kc) = server();
    for i in 0..23 {
        api.apply(
            "deployments",
            deployment(
                &format!("ns{}", i % 3),
                &format!("d{i:02}"),
                1,
                &Template::image(&format!("reg.io/app:{i}")),
            ),
        );
    }
    api.apply(
        "statefulsets",
        statefulset("ns0", "s", 1, &Template::image("reg.io/db:1")),
    );
    api.apply(
        "daemonsets",
        daemonset("ns0", "ds", 2, &Template::image("reg.io/agent:1")),
    );
    api.apply(
        "cronjobs",
        cronjob(
            "ns0",
            "cj",
            false,
            &Template::image("reg.io/job:1").init("setup", "reg.io/setup:1"),
        ),
    );
    let opts = WatchOptions {
        page_size: 5,
        ..fast_watch()
    };
    let w = Watching::start(&kc, all_streams(None), opts, inv_config());
    w.wait_synced();
    let who = w.who();
    assert_eq!(who.len(), 23 + 4, "{who:#?}");
    assert!(
        who.contains(&"cronjob ns0/cj setup".to_string()),
        "init containers are checked too"
    );
    assert!(who.contains(&"daemonset ns0/ds app".to_string()));
    let deployment_lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/apis/apps/v1/deployments" && !r.query.contains_key("watch"))
        .collect();
    assert_eq!(deployment_lists.len(), 5, "23 objects in pages of 5");
    assert!(deployment_lists
        .iter()
        .all(|r| r.query.get("limit").map(String::as_str) == Some("5")));
    assert_eq!(
        deployment_lists
            .iter()
            .filter(|r| r.query.contains_key("continue"))
            .count(),
        4
    );
}

#[test]
fn every_watch_event_type_is_applied() {
    let (api, kc) = server();
    api.deploy("a", "web", "reg.io/web:1");
    let w = Watching::start(&kc, all_streams(None), fast_watch(), inv_config());
    w.wait_synced();
    // ADDED
    api.deploy("a", "api", "reg.io/api:1");
    w.wait_for("added deployment", |s| {
        s.iter().any(|c| c.image == "reg.io/api:1")
    });
    // MODIFIED: new image
    api.deploy("a", "web", "reg.io/web:2");
    w.wait_for("modified deployment", |s| {
        s.iter().any(|c| c.image == "reg.io/web:2") && !s.iter().any(|c| c.image == "reg.io/web:1")
    });
    // MODIFIED: scaled to zero is disabled, so not reported
    api.apply(
        "deployments",
        deployment("a", "api", 0, &Template::image("reg.io/api:1")),
    );
    w.wait_for("scaled to zero", |s| {
        !s.iter().any(|c| c.image == "reg.io/api:1")
    });
    // DELETED
    api.delete("deployments", "a", "web");
    w.wait_for("deleted deployment", |s| s.is_empty());
}

#[test]
fn a_dropped_stream_resumes_from_the_last_version() {
    let (api, kc) = server();
    api.deploy("a", "one", "reg.io/one:1");
    let streams = deployments();
    let w = Watching::start(&kc, streams, long_watch(), inv_config());
    w.wait_synced();
    api.deploy("a", "two", "reg.io/two:1");
    w.wait_for("two", |s| s.len() == 2);
    let seen_rv = api.resource_version();
    api.drop_watches();
    // Changes while the client reconnects: none may be lost.
    api.deploy("a", "three", "reg.io/three:1");
    api.delete("deployments", "a", "one");
    w.wait_for("three added and one deleted", |s| {
        s.iter().map(|c| c.image.as_str()).collect::<Vec<_>>() == ["reg.io/three:1", "reg.io/two:1"]
    });
    let reqs = api.requests();
    let lists = reqs
        .iter()
        .filter(|r| !r.query.contains_key("watch"))
        .count();
    assert_eq!(lists, 1, "a broken stream is resumed, not relisted");
    let watches: Vec<_> = reqs
        .iter()
        .filter(|r| r.query.contains_key("watch"))
        .collect();
    assert!(watches.len() >= 2);
    let resumed = watches.last().unwrap();
    assert_eq!(
        resumed.query["resourceVersion"],
        seen_rv.to_string(),
        "resumes from the last version it saw"
    );
    assert_eq!(resumed.query["allowWatchBookmarks"], "true");
    assert!(resumed.query.contains_key("timeoutSeconds"));
}

#[test]
fn gone_forces_a_relist_that_removes_objects_deleted_meanwhile() {
    let (api, kc) = server();
    api.deploy("a", "stays", "reg.io/stays:1");
    api.deploy("a", "goes", "reg.io/goes:1");
    let streams = deployments();
    let w = Watching::start(&kc, streams, long_watch(), inv_config());
    w.wait_synced();
    w.wait_for("both", |s| s.len() == 2);
    // Cut the stream, change things, and compact so the old version is gone.
    api.drop_watches();
    api.delete("deployments", "a", "goes");
    api.deploy("b", "new", "reg.io/new:1");
    api.compact();
    w.wait_for("relist converged", |s| {
        s.iter().map(|c| c.who.as_str()).collect::<Vec<_>>()
            == ["deployment a/stays app", "deployment b/new app"]
    });
    let lists = api
        .requests()
        .into_iter()
        .filter(|r| !r.query.contains_key("watch") && r.status == 200)
        .count();
    assert!(lists >= 2, "410 led to a new list");
}

#[test]
fn an_expired_continue_token_restarts_the_list() {
    let (api, kc) = server();
    for i in 0..6 {
        api.apply(
            "deployments",
            deployment(
                "a",
                &format!("d{i}"),
                1,
                &Template::image(&format!("reg.io/d:{i}")),
            ),
        );
    }
    api.expire_next_continue();
    let streams = deployments();
    let w = Watching::start(
        &kc,
        streams,
        WatchOptions {
            page_size: 2,
            ..fast_watch()
        },
        inv_config(),
    );
    w.wait_synced();
    assert_eq!(w.seen().len(), 6);
    let reqs = api.requests();
    assert!(reqs
        .iter()
        .any(|r| r.status == 410 && r.query.contains_key("continue")));
    // After the 410 the list starts again without a continue token.
    let after: Vec<_> = reqs
        .iter()
        .skip_while(|r| r.status != 410)
        .skip(1)
        .collect();
    assert!(!after[0].query.contains_key("continue"));
}

#[test]
fn bookmarks_advance_the_resource_version() {
    let (api, kc) = server();
    api.set_bookmark_interval(Duration::from_millis(100));
    api.deploy("a", "web", "reg.io/web:1");
    let streams = deployments();
    let w = Watching::start(&kc, streams, long_watch(), inv_config());
    w.wait_synced();
    let list_rv = api.resource_version();
    // Other resources move the global version; only bookmarks tell the deployment watch.
    for i in 0..3 {
        api.apply(
            "serviceaccounts",
            service_account("a", &format!("sa{i}"), &[]),
        );
    }
    let now = api.resource_version();
    assert!(now > list_rv);
    // Wait for a bookmark carrying the new version, then break the stream.
    wait_until(
        "a bookmark at the new version",
        Duration::from_secs(10),
        || api.bookmarks().contains(&now),
    );
    api.drop_watches();
    wait_until("a resumed watch", Duration::from_secs(10), || {
        api.requests()
            .iter()
            .filter(|r| r.query.contains_key("watch"))
            .count()
            >= 2
    });
    let watches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.query.contains_key("watch"))
        .collect();
    assert_eq!(watches[0].query["resourceVersion"], list_rv.to_string());
    assert_eq!(
        watches[1].query["resourceVersion"],
        now.to_string(),
        "the bookmark's version was kept"
    );
    drop(w);
}

#[test]
fn namespace_scoping_uses_namespaced_paths_only() {
    let (api, kc) = server();
    api.deploy("team-a", "mine", "reg.io/mine:1");
    api.deploy("team-b", "theirs", "reg.io/theirs:1");
    let w = Watching::start(&kc, all_streams(Some("team-a")), fast_watch(), inv_config());
    w.wait_synced();
    assert_eq!(w.who(), ["deployment team-a/mine app"]);
    for r in api.requests() {
        assert!(
            r.path.contains("/namespaces/team-a/"),
            "cluster-wide request {}",
            r.path
        );
    }
}

#[test]
fn forbidden_secrets_do_not_stop_the_rest() {
    let (api, kc) = server();
    api.forbid("secrets");
    api.apply(
        "deployments",
        deployment(
            "a",
            "web",
            1,
            &Template::image("reg.io/web:1").pull_secret("pull"),
        ),
    );
    let w = Watching::start(&kc, all_streams(None), fast_watch(), inv_config());
    w.wait_for("workloads without secrets", |s| s.len() == 1);
    // The Secrets lists may still be in flight when the workload shows up.
    wait_until(
        "the Secrets lists to be refused",
        Duration::from_secs(10),
        || api.requests().iter().any(|r| r.status == 403),
    );
    let secrets: Vec<_> = w
        .streams
        .iter()
        .filter(|(s, _)| s.resource.api().1 == "secrets")
        .collect();
    assert_eq!(secrets.len(), 2);
    for (_, state) in secrets {
        assert!(!state.synced.load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            state.alive.load(std::sync::atomic::Ordering::SeqCst),
            "the loop keeps retrying, it does not die"
        );
    }
    assert!(api.requests().iter().any(|r| r.status == 403));
    assert_eq!(w.seen()[0].users, Vec::<String>::new());
}

#[test]
fn credentials_follow_the_kubelet_rules() {
    let (api, kc) = server();
    // Namespace a: a template secret, an SA secret, a garbage secret, a legacy dockercfg secret.
    api.apply(
        "secrets",
        pull_secret("a", "own", "reg.io", "own-user", "pw1"),
    );
    api.apply(
        "secrets",
        pull_secret("a", "sa-pull", "reg.io", "sa-user", "pw2"),
    );
    api.apply("secrets", garbage_pull_secret("a", "broken"));
    api.apply(
        "secrets",
        dockercfg_secret("a", "legacy", "reg.io", "legacy-user", "pw3"),
    );
    api.apply(
        "serviceaccounts",
        service_account("a", "default", &["sa-pull"]),
    );
    api.apply(
        "serviceaccounts",
        service_account("a", "builder", &["legacy"]),
    );
    api.apply(
        "deployments",
        deployment(
            "a",
            "named",
            1,
            &Template::image("reg.io/x:1").pull_secret("own"),
        ),
    );
    api.deploy("a", "via-sa", "reg.io/x:1");
    api.apply(
        "deployments",
        deployment(
            "a",
            "other-sa",
            1,
            &Template::image("reg.io/x:1").service_account("builder"),
        ),
    );
    api.apply(
        "deployments",
        deployment(
            "a",
            "garbage",
            1,
            &Template::image("reg.io/x:1").pull_secret("broken"),
        ),
    );
    // Namespace b has the same names but no secrets: nothing from a may leak in.
    api.apply(
        "deployments",
        deployment(
            "b",
            "named",
            1,
            &Template::image("reg.io/x:1").pull_secret("own"),
        ),
    );
    api.apply(
        "serviceaccounts",
        service_account("b", "default", &["sa-pull"]),
    );
    let w = Watching::start(&kc, all_streams(None), fast_watch(), inv_config());
    w.wait_synced();
    let users = |who: &str| {
        w.seen()
            .into_iter()
            .find(|s| s.who == who)
            .unwrap_or_else(|| panic!("{who}"))
            .users
    };
    assert_eq!(
        users("deployment a/named app"),
        ["own-user"],
        "template secrets win; the SA's are not added"
    );
    assert_eq!(
        users("deployment a/via-sa app"),
        ["sa-user"],
        "no template secrets: the SA's apply"
    );
    assert_eq!(users("deployment a/other-sa app"), ["legacy-user"]);
    assert!(
        users("deployment a/garbage app").is_empty(),
        "a garbage secret gives no credentials"
    );
    assert!(
        users("deployment b/named app").is_empty(),
        "credentials of namespace a never apply in b"
    );
    // The secret arrives in b later: b's workload picks it up.
    api.apply(
        "secrets",
        pull_secret("b", "own", "reg.io", "b-user", "pw4"),
    );
    w.wait_for("b's own secret", |s| {
        s.iter()
            .any(|c| c.who == "deployment b/named app" && c.users == ["b-user"])
    });
    // Rotating a's secret changes a's check.
    api.apply(
        "secrets",
        pull_secret("a", "own", "reg.io", "own-user-2", "pw5"),
    );
    w.wait_for("rotated", |s| {
        s.iter()
            .any(|c| c.who == "deployment a/named app" && c.users == ["own-user-2"])
    });
}

#[test]
fn other_secret_types_are_never_fetched() {
    let (api, kc) = server();
    for i in 0..20 {
        api.apply(
            "secrets",
            helm_secret("a", &format!("sh.helm.release.v1.app.v{i}"), 64 << 10),
        );
    }
    api.apply("secrets", pull_secret("a", "pull", "reg.io", "u", "p"));
    api.apply(
        "secrets",
        dockercfg_secret("a", "old", "reg.io", "u2", "p2"),
    );
    let w = Watching::start(&kc, all_streams(None), fast_watch(), inv_config());
    w.wait_synced();
    // Watch events for more helm releases must not reach us either.
    api.apply(
        "secrets",
        helm_secret("a", "sh.helm.release.v1.app.v99", 64 << 10),
    );
    api.apply("secrets", pull_secret("b", "pull", "reg.io", "u3", "p3"));
    wait_until(
        "the new pull secret to be served",
        Duration::from_secs(10),
        || api.served("secrets") >= 3,
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        api.served("secrets"),
        3,
        "only the three pull secrets were ever sent"
    );
    for r in api
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/secrets"))
    {
        let f = r.query.get("fieldSelector").cloned().unwrap_or_default();
        assert!(
            f == "type=kubernetes.io/dockerconfigjson" || f == "type=kubernetes.io/dockercfg",
            "unfiltered secrets request: {r:?}"
        );
    }
}

#[test]
fn namespace_label_limits_checked_namespaces() {
    let (api, kc) = server();
    api.apply(
        "namespaces",
        namespace("watched", &[("image-checks", "on")]),
    );
    api.apply("namespaces", namespace("ignored", &[]));
    api.deploy("watched", "a", "reg.io/a:1");
    api.deploy("ignored", "b", "reg.io/b:1");
    let mut streams = all_streams(None);
    streams.push(Stream {
        resource: Resource::Namespaces,
        namespace: None,
        label_selector: Some("image-checks".into()),
    });
    let w = Watching::start(
        &kc,
        streams,
        fast_watch(),
        InventoryConfig {
            filter_namespaces: true,
            ..inv_config()
        },
    );
    w.wait_synced();
    assert_eq!(w.who(), ["deployment watched/a app"]);
    // Labelling a namespace brings its workloads in; removing the label takes them out.
    api.apply(
        "namespaces",
        namespace("ignored", &[("image-checks", "yes")]),
    );
    w.wait_for("labelled", |s| s.len() == 2);
    api.apply("namespaces", namespace("watched", &[]));
    w.wait_for("unlabelled", |s| {
        s.len() == 1 && s[0].who == "deployment ignored/b app"
    });
}

#[test]
fn exec_plugin_tokens_are_refreshed() {
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["first".into()]));
    let dir = TempDir::new("exec");
    let token_file = dir.write("token.txt", "first");
    let calls = dir.join("calls").to_string_lossy().into_owned();
    let info = dir.join("info").to_string_lossy().into_owned();
    let script = dir.write(
        "plugin.sh",
        format!(
            "#!/bin/sh\necho x >> {calls}\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > {info}\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"%s\",\"expirationTimestamp\":\"%s\"}}}}' \"$(cat {token_file})\" \"$(date -u -d '+30 seconds' +%Y-%m-%dT%H:%M:%SZ)\"\n"
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let user = format!("    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {script}\n      provideClusterInfo: true\n");
    let kc = api.kubeconfig(&user);
    api.deploy("a", "one", "reg.io/one:1");
    let streams = deployments();
    let w = Watching::start(&kc, streams, long_watch(), inv_config());
    w.wait_synced();
    let info_text = std::fs::read_to_string(&info).unwrap();
    assert!(
        info_text.contains("\"kind\":\"ExecCredential\"") && info_text.contains(&api.url),
        "{info_text}"
    );
    // Rotate: the server now accepts only the new token, the plugin returns it.
    std::fs::write(&token_file, "second").unwrap();
    api.set_tokens(&["second"]);
    api.drop_watches();
    api.deploy("a", "two", "reg.io/two:1");
    w.wait_for("the object created after rotation", |s| s.len() == 2);
    let runs = std::fs::read_to_string(&calls).unwrap().lines().count();
    assert!(
        runs >= 2,
        "the plugin ran again after the 401 ({runs} runs)"
    );
    assert!(api.requests().iter().any(|r| r.user == "token:second"));
}

#[test]
fn exec_plugin_runs_again_before_its_credential_expires() {
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["tok".into()]));
    let dir = TempDir::new("exec-expiry");
    let calls = dir.join("calls").to_string_lossy().into_owned();
    // Valid for 12 s: with the 10 s safety margin it is stale after 2 s.
    let script = dir.write(
        "plugin.sh",
        format!(
            "#!/bin/sh\necho x >> {calls}\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"tok\",\"expirationTimestamp\":\"%s\"}}}}' \"$(date -u -d '+12 seconds' +%Y-%m-%dT%H:%M:%SZ)\"\n"
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let kc = api.kubeconfig(&format!("    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {script}\n"));
    let streams = deployments();
    let w = Watching::start(&kc, streams, long_watch(), inv_config());
    w.wait_synced();
    let runs = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let first = runs();
    std::thread::sleep(Duration::from_millis(2500));
    api.drop_watches();
    wait_until("the plugin to run again", Duration::from_secs(10), || {
        runs() > first
    });
    api.deploy("a", "x", "reg.io/x:1");
    w.wait_for("the new object", |s| s.len() == 1);
    assert!(
        api.requests().iter().all(|r| r.status != 401),
        "refreshed before expiry, not after a 401"
    );
}

#[test]
fn client_certificates_authenticate() {
    use base64::Engine;
    let api = FakeApiServer::start(ServerAuth::ClientCerts(vec![]));
    api.deploy("a", "one", "reg.io/one:1");
    // An EC key in a file, by path.
    let (cert, key) = api.client_cert("exporter", false);
    let kc = api.kubeconfig(&format!(
        "    client-certificate: {cert}\n    client-key: {key}\n"
    ));
    let w = Watching::start(&kc, deployments(), fast_watch(), inv_config());
    w.wait_synced();
    assert_eq!(w.seen().len(), 1);
    // An RSA PKCS#1 key inline, as kind and kubeadm write kubeconfigs.
    let (cert, key) = api.client_cert("kind-admin", true);
    let b64 = |p: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap());
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    let kc = api.kubeconfig(&format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&cert),
        b64(&key)
    ));
    let w2 = Watching::start(&kc, deployments(), fast_watch(), inv_config());
    w2.wait_synced();
    assert_eq!(w2.seen().len(), 1);
    let users: std::collections::BTreeSet<String> =
        api.requests().into_iter().map(|r| r.user).collect();
    assert_eq!(
        users,
        ["cert:exporter".to_string(), "cert:kind-admin".to_string()].into()
    );
}
