//! The reads of one check past the tag's answer, made as a node's pull
//! makes them: manifests by digest (counted pulls on Docker Hub, held back
//! within the nodes' quota reserve), config blobs, and blobs confirmed the
//! way containerd fetches them. Manifests are read once per check (the
//! platform read and the pull path walk share them), blobs asked once.
//!
//! containerd never HEADs a blob: it GETs it. Registries answer blob HEADs
//! in ways a GET never sees: ECR Public refuses every blob HEAD (401) even
//! with a valid token, storage URLs presigned for GET refuse a HEAD that
//! follows the redirect (403 `SignatureDoesNotMatch`), a Harbor proxy
//! cache answers HEAD from its own blob table (404 for every blob not
//! pulled through it yet). So a blob HEAD that is refused or says 404 or
//! 405 is asked again with `GET` and `Range: bytes=0-0`, reading a byte at
//! most and dropping the connection; only the GET's answer decides. On
//! Docker Distribution, whose HEAD is right, nothing changes.

use super::errors::RegistryErrors;
use super::manifest::{self, Manifest, Platforms};
use super::pull_path::{Failure, Fetch};
use super::session::{Ctx, Sender, Via, MANIFEST_ACCEPT};
use super::transport::{Method, Response};
use crate::image::platform::Platform;
use crate::image::reference::Reference;

/// Manifests are at most 4 MiB by spec; no GET of one reads more.
pub const MANIFEST_BODY_LIMIT: u64 = 4 << 20;

/// Bytes of a blob a confirming GET reads: it asks for one; a server that
/// ignores `Range` gets its connection dropped after this.
const BLOB_PROBE_LIMIT: u64 = 1;

/// The requests of one check past the manifest answer, with its
/// credentials and scheme.
pub struct Reader<'s, 'x> {
    sender: &'s Sender,
    quota_reserve: u8,
    /// The check's request count and announced quota.
    pub ctx: &'x mut Ctx,
    /// The image on the host being checked.
    pub r: &'x Reference,
    via: Via<'x>,
    manifests: Vec<(String, Result<Manifest, Failure>)>,
    blobs: Vec<String>,
    /// Blob HEADs a GET had to confirm.
    pub confirmed: u32,
    /// The tag's manifest, as read, is Docker's schema 1.
    pub schema1: bool,
}

impl<'s, 'x> Reader<'s, 'x> {
    /// Reads for `r` the way `via` reached its manifest; `quota_reserve`
    /// is `--pull-quota-reserve`.
    pub fn new(
        sender: &'s Sender,
        quota_reserve: u8,
        ctx: &'x mut Ctx,
        r: &'x Reference,
        via: Via<'x>,
    ) -> Self {
        Reader {
            sender,
            quota_reserve,
            ctx,
            r,
            via,
            manifests: Vec::new(),
            blobs: Vec::new(),
            confirmed: 0,
            schema1: false,
        }
    }

    /// Keeps the tag's manifest, already read (a GET's answer), under its
    /// digest.
    pub fn keep(&mut self, digest: &str, content_type: Option<&str>, body: &[u8]) {
        let m = manifest::parse_manifest(content_type, body).map_err(Failure::Unverified);
        self.schema1 |= matches!(m, Ok(Manifest::Schema1 { .. }));
        self.manifests.push((digest.to_string(), m));
    }

    /// Keeps the tag's manifest, read without a usable digest, under the
    /// hash of its bytes; that digest. A signed schema 1 manifest's digest
    /// is the hash of its payload without the signatures, not of the bytes
    /// served: it has none we can know.
    pub fn keep_hashed(
        &mut self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<String, String> {
        if body.len() as u64 >= MANIFEST_BODY_LIMIT {
            return Err(format!("manifest larger than {MANIFEST_BODY_LIMIT} bytes"));
        }
        let digest = manifest::digest_of(body);
        self.keep(&digest, content_type, body);
        if self.schema1 {
            return Err("a schema 1 manifest, whose digest is not the hash of its bytes".into());
        }
        Ok(digest)
    }

    /// Why a counted request may not be made now: the quota this check's
    /// answers announced is within the nodes' reserve.
    pub fn held_back(&self) -> Option<String> {
        self.ctx
            .held_for_nodes(self.quota_reserve)
            .map(|q| q.describe_reserve(self.r.api_host(), self.quota_reserve))
    }

    /// The digest of the tag's manifest when the registry sent none (or
    /// one that is not a digest), as containerd learns it: GET the manifest
    /// and hash its bytes. A counted pull, so held back within the reserve.
    /// The manifest read is kept for the platform read and the walk.
    pub fn digest_by_hashing(&mut self) -> Result<String, String> {
        if let Some(why) = self.held_back() {
            return Err(why);
        }
        let reference = self.r.manifest_ref();
        let resp = self
            .get_manifest(reference)
            .map_err(|f| format!("GET manifest {reference}: {}", f.text()))?;
        self.keep_hashed(resp.header("content-type"), &resp.body)
    }

    /// The digests an index lists, when this check read `digest`: empty
    /// for a single manifest, `None` when it was not read (or not readable).
    pub fn listed(&self, digest: &str) -> Option<Vec<String>> {
        match self.manifests.iter().find(|(d, _)| d == digest)? {
            (_, Ok(Manifest::Index(entries))) => {
                Some(entries.iter().map(|e| e.digest.clone()).collect())
            }
            (_, Ok(_)) => Some(Vec::new()),
            (_, Err(_)) => None,
        }
    }

    /// Whether the manifest `digest`, read in this check, is schema 1 (a
    /// registry that does not say so in its HEAD's Content-Type).
    pub fn read_as_schema1(&self, digest: &str) -> bool {
        self.manifests
            .iter()
            .any(|(d, m)| d == digest && matches!(m, Ok(Manifest::Schema1 { .. })))
    }

    /// The platforms of manifest `digest`: an index lists them (entries
    /// without one are read, a few, as containerd does); a single
    /// manifest's config blob says it.
    pub fn platforms(&mut self, digest: &str) -> Result<Platforms, String> {
        let text = |what: &str, d: &str, f: Failure| format!("GET {what} {d}: {}", f.text());
        let top = self
            .manifest(digest)
            .map_err(|f| text("manifest", digest, f))?;
        let mut found = Vec::new();
        match top {
            Manifest::Index(entries) => {
                let mut unlabelled = 0;
                for e in entries {
                    if let Some(p) = e.platform {
                        found.push(p);
                        continue;
                    }
                    // containerd reads an entry without a platform to learn
                    // it; so do we, for a few.
                    unlabelled += 1;
                    if unlabelled > manifest::MAX_UNLABELLED_ENTRIES {
                        continue;
                    }
                    match self
                        .manifest(&e.digest)
                        .map_err(|f| text("manifest", &e.digest, f))?
                    {
                        Manifest::Image { config, .. } => found.push(self.config(&config)?),
                        Manifest::Schema1 { platform, .. } => found.push(platform),
                        Manifest::Index(_) | Manifest::NotImage(_) => {}
                    }
                }
            }
            Manifest::Image { config, .. } => found.push(self.config(&config)?),
            Manifest::Schema1 { platform, .. } => found.push(platform),
            Manifest::NotImage(why) => return Ok(Platforms::Unknown(why)),
        }
        Ok(Platforms::Known(manifest::distinct(found)))
    }

    /// The platform of an image config blob (a GET, which blob requests
    /// are: not counted).
    fn config(&mut self, digest: &str) -> Result<Platform, String> {
        let path = format!("/v2/{}/blobs/{digest}", self.r.repository);
        let resp = self
            .download(Method::Get, path, &[], MANIFEST_BODY_LIMIT)
            .map_err(|f| format!("GET config {digest}: {}", f.text()))?;
        self.blobs.push(digest.to_string());
        manifest::parse_config(&resp.body)
    }

    /// A manifest GET (by digest or tag) under the counted-pull rule's
    /// caller's care.
    fn get_manifest(&mut self, reference: &str) -> Result<Response, Failure> {
        let path = Ctx::manifest_path(&self.r.repository, reference);
        self.download(
            Method::Get,
            path,
            &[("Accept", MANIFEST_ACCEPT)],
            MANIFEST_BODY_LIMIT,
        )
    }

    /// A download request on the image's registry, by the scheme the
    /// manifest request used; blob redirects to storage elsewhere lose the
    /// credentials. An answer other than 2xx is classified as a node's
    /// pull would fail on it.
    fn download(
        &mut self,
        method: Method,
        path: String,
        headers: &[(&str, &str)],
        limit: u64,
    ) -> Result<Response, Failure> {
        let url = self
            .ctx
            .registry_url(self.via.scheme, self.r.api_host(), path);
        let resp = self
            .sender
            .send(self.ctx, method, &url, self.via.auth, headers, limit)
            .map_err(|e| Failure::Unverified(e.to_string()))?;
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        Err(failure_of(&resp))
    }
}

/// What a failed download answer means for a node's pull.
fn failure_of(resp: &Response) -> Failure {
    // Only a failed answer's body is a registry error (a manifest's is read
    // once, by its caller).
    let errors = RegistryErrors::parse(&resp.body);
    let detail = || format!("HTTP {}{}", resp.status, errors.detail());
    match resp.status {
        404 => Failure::Missing(detail()),
        401 | 403 | 412 => Failure::Refused(detail()),
        429 => Failure::Unverified(format!("{}, rate limited", detail())),
        _ if errors.has("BLOB_UNKNOWN")
            || errors.has("MANIFEST_UNKNOWN")
            || errors.has("NAME_UNKNOWN") =>
        {
            Failure::Missing(detail())
        }
        _ if errors.has("DENIED") => Failure::Refused(detail()),
        _ => Failure::Unverified(detail()),
    }
}

impl Fetch for Reader<'_, '_> {
    fn manifest(&mut self, digest: &str) -> Result<Manifest, Failure> {
        if let Some((_, m)) = self.manifests.iter().find(|(d, _)| d == digest) {
            return m.clone();
        }
        let m = match self.held_back() {
            Some(why) => Err(Failure::Unverified(why)),
            None => self.get_manifest(digest).and_then(|resp| {
                manifest::parse_manifest(resp.header("content-type"), &resp.body)
                    .map_err(Failure::Unverified)
            }),
        };
        self.manifests.push((digest.to_string(), m.clone()));
        m
    }

    fn blob(&mut self, digest: &str) -> Result<(), Failure> {
        if self.blobs.iter().any(|b| b == digest) {
            return Ok(());
        }
        let path = format!("/v2/{}/blobs/{digest}", self.r.repository);
        let head_url = self
            .ctx
            .registry_url(self.via.scheme, self.r.api_host(), path);
        let head = self
            .sender
            .send(self.ctx, Method::Head, &head_url, self.via.auth, &[], 0)
            .map_err(|e| Failure::Unverified(e.to_string()))?;
        if !(200..300).contains(&head.status) {
            if !matches!(head.status, 401 | 403 | 404 | 405) {
                return Err(failure_of(&head));
            }
            // Only a GET, what a node sends, decides.
            self.confirmed += 1;
            let get = self
                .sender
                .send(
                    self.ctx,
                    Method::Get,
                    &head_url,
                    self.via.auth,
                    &[("Range", "bytes=0-0")],
                    BLOB_PROBE_LIMIT,
                )
                .map_err(|e| Failure::Unverified(format!("GET: {e}")))?;
            // 416: the blob is there, shorter than the range asked (empty).
            if !(200..300).contains(&get.status) && get.status != 416 {
                return Err(confirm_note(failure_of(&get), head.status));
            }
        }
        self.blobs.push(digest.to_string());
        Ok(())
    }
}

/// A refused or missing blob, after its HEAD said the same, names both.
fn confirm_note(f: Failure, head_status: u16) -> Failure {
    let note = |s: String| format!("{s} on GET (HEAD: HTTP {head_status})");
    match f {
        Failure::Missing(s) => Failure::Missing(note(s)),
        Failure::Refused(s) => Failure::Refused(note(s)),
        Failure::Unverified(s) => Failure::Unverified(note(s)),
    }
}
