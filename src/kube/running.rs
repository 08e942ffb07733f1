//! What a running pod says of the images it runs: the digest its runtime
//! reports for each container (`status.containerStatuses[].imageID`, and
//! `initContainerStatuses`), in the forms kubelets write, and the name a
//! CronJob gives its Jobs. Compared with the digest a tag names now, it
//! tells whether the next pod would run the same build (`tag_moved`).

use serde::Deserialize;

/// One `status.containerStatuses[]` (or `initContainerStatuses[]`) entry.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name.
    #[serde(default)]
    pub name: String,
    /// What the runtime pulled: `registry/repo@sha256:…` (containerd,
    /// CRI-O), `docker-pullable://repo@sha256:…` (cri-dockerd), or an image
    /// ID `sha256:…` with no repository digest (a local image).
    #[serde(rename = "imageID", default)]
    pub image_id: String,
}

/// The repository digest in an `imageID`, when it names one: the part after
/// the last `@`, if it is a digest. A bare `sha256:…` (or `docker://sha256:…`)
/// is the image's ID, the hash of its config, which no tag is compared
/// with: no verdict for that container. The repository before `@` is not
/// compared: it may be spelled otherwise (normalised, or a mirror's).
pub fn repository_digest(image_id: &str) -> Option<&str> {
    let (_, digest) = image_id.trim().rsplit_once('@')?;
    crate::registry::manifest::valid_digest(digest).then_some(digest)
}

/// The CronJob a Job was created by, from the Job's name: the CronJob
/// controller names each Job `<cronjob>-<scheduled time in minutes>`
/// (pkg/controller/cronjob, getJobName). A pod names only its Job, so
/// this is a guess the inventory confirms against the CronJobs it knows.
pub fn cronjob_of_job(job: &str) -> Option<&str> {
    let (name, minutes) = job.rsplit_once('-')?;
    (!name.is_empty() && minutes.len() >= 8 && minutes.bytes().all(|b| b.is_ascii_digit()))
        .then_some(name)
}

/// The controller a ReplicaSet's pods come from, by the ReplicaSet's name
/// and the pod's template hash label: `<owner>-<hash>`.
pub fn replicaset_owner<'a>(replicaset: &'a str, hash: &str) -> Option<&'a str> {
    replicaset
        .strip_suffix(hash)
        .and_then(|n| n.strip_suffix('-'))
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn image_ids_as_kubelets_write_them() {
        for id in [
            format!("docker.io/library/nginx@{D}"),
            format!("registry.example.com:5000/team/app@{D}"),
            format!("docker-pullable://nginx@{D}"),
            format!("  quay.io/a/b@{D}\n"),
        ] {
            assert_eq!(repository_digest(&id), Some(D), "{id}");
        }
        for id in [
            D.to_string(),
            format!("docker://{D}"),
            String::new(),
            "nginx@sha256:short".into(),
        ] {
            assert_eq!(repository_digest(&id), None, "{id}");
        }
    }

    #[test]
    fn owners() {
        assert_eq!(cronjob_of_job("backup-29012345"), Some("backup"));
        assert_eq!(cronjob_of_job("a-b-29012345"), Some("a-b"));
        assert_eq!(cronjob_of_job("migrate-1"), None);
        assert_eq!(cronjob_of_job("-29012345"), None);
        assert_eq!(replicaset_owner("web-7d4b9c8f6", "7d4b9c8f6"), Some("web"));
        assert_eq!(replicaset_owner("web-7d4b9c8f6", "other"), None);
        assert_eq!(replicaset_owner("-7d4b9c8f6", "7d4b9c8f6"), None);
    }
}
