//! Pulling images from registries into the local cache, over the OCI distribution API
//! (`oci-client`: anonymous, basic and bearer-token logins). An image already in the cache is
//! used as it is, without a network request; `--pull` asks the registry whether a tag moved.
//! An index (or Docker manifest list) is stored whole and followed to linux/amd64, whose
//! manifest, config and layers are stored beside it, Docker v2 schema 2 and OCI alike. Blobs are
//! written through [`Ingest`], so the cache only ever holds whole, verified blobs; the cache's
//! entry naming the image is written last. A registry is spoken to over https, or over http
//! when it is on this machine (localhost, 127.0.0.0/8, ::1) or named by `--insecure-registry`
//! and does not answer https.
//! Runs in: `kiln` on the build host. Network access; writes only below the cache.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol, LayerDescriptor};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

use crate::images::credentials::{self, Credentials, Login};
use crate::images::progress::PullProgress;
use crate::oci::ingest::{CommitError, Ingest};
use crate::oci::layout::{self, is_index, Layout, REF_NAME};
use crate::oci::platform::{platform, ARCHITECTURE, OS};

/// The manifest kinds asked for, single-platform and multi-platform, OCI and Docker.
const ACCEPTED: [&str; 4] = [
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// How long a connection may take to open, and a read to wait for bytes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// What the command line says about pulls.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `--pull`: ask the registry for every tag, even one the cache has.
    pub pull: bool,
    /// `--insecure-registry HOST[:PORT]`: may be spoken to over http.
    pub insecure: Vec<String>,
    /// `--registry-auth HOST=USER:PASSWORD`.
    pub logins: Vec<Login>,
    /// Draw progress in place (standard error is a terminal).
    pub terminal: bool,
}

/// Pulls images into a cache; the network runtime and clients are made on the first pull.
#[derive(Default)]
pub struct Registry {
    options: PullOptions,
    runtime: OnceCell<tokio::runtime::Runtime>,
    /// One client per registry host, with the protocol found to work for it.
    clients: std::cell::RefCell<HashMap<String, std::rc::Rc<Client>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(options: PullOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// Makes sure the cache at `cache` holds `reference` under its full name: pulled when it
    /// is missing, or when `--pull` is given and the tag now names other content.
    pub fn ensure(&self, reference: &Reference, cache: &Path) -> Result<()> {
        let name = reference.whole();
        let _lock = layout::lock(cache)?;
        let cached = layout::lookup(cache, &name)?;
        if cached.is_some() && (!self.options.pull || reference.digest().is_some()) {
            return Ok(());
        }
        let runtime = match self.runtime.get() {
            Some(runtime) => runtime,
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the network runtime")?;
                self.runtime.get_or_init(|| runtime)
            }
        };
        let mut progress = PullProgress::start(&name, self.options.terminal);
        let result = runtime.block_on(self.pull(reference, cache, cached.as_ref(), &mut progress));
        match &result {
            Ok(Pulled::Fetched(digest)) => progress.done(digest),
            Ok(Pulled::UpToDate(digest)) => progress.up_to_date(digest),
            Err(_) => progress.failed(),
        }
        result
            .map(drop)
            .with_context(|| format!("cannot pull `{name}`"))
    }

    /// Pulls `reference` into `cache`; says whether it fetched anything and the digest its
    /// entry names.
    async fn pull(
        &self,
        reference: &Reference,
        cache: &Path,
        cached: Option<&Descriptor>,
        progress: &mut PullProgress,
    ) -> Result<Pulled> {
        let host = reference.resolve_registry().to_owned();
        let credentials = credentials::for_registry(reference.registry(), &self.options.logins)?;
        let client = self.client(reference, &credentials).await?;
        let failed = |err| explain(err, reference, &credentials);
        if let Some(cached) = cached {
            let digest = client
                .fetch_manifest_digest(reference, &credentials.auth)
                .await
                .map_err(failed)?;
            if digest == cached.digest().to_string() {
                return Ok(Pulled::UpToDate(digest));
            }
        }
        let layout = Layout::create(cache)?;
        let (top, top_digest) = client
            .pull_manifest_raw(reference, &credentials.auth, &ACCEPTED)
            .await
            .map_err(failed)?;
        let top_type = media_type(&top).with_context(|| format!("the manifest from {host}"))?;
        let top_descriptor = layout.put_blob(&top, MediaType::from(top_type.as_str()))?;
        check_digest(&top_descriptor, &top_digest)?;
        let manifest = if is_index(&top_type) {
            let index = ImageIndex::from_reader(&top[..])
                .with_context(|| format!("the index {top_digest} from {host} is not valid"))?;
            let entry = platform(&index)?;
            let digest = entry.digest().to_string();
            let (bytes, _) = client
                .pull_manifest_raw(
                    &reference.clone_with_digest(digest.clone()),
                    &credentials.auth,
                    &ACCEPTED,
                )
                .await
                .map_err(failed)?;
            if is_index(&media_type(&bytes)?) {
                bail!("the {OS}/{ARCHITECTURE} entry {digest} of the index is itself an index");
            }
            let stored = layout.put_blob(&bytes, entry.media_type().clone())?;
            check_digest(&stored, &digest)?;
            ImageManifest::from_reader(&bytes[..])
                .with_context(|| format!("the manifest {digest} from {host} is not valid"))?
        } else {
            ImageManifest::from_reader(&top[..])
                .with_context(|| format!("the manifest {top_digest} from {host} is not valid"))?
        };
        let blobs: Vec<&Descriptor> = std::iter::once(manifest.config())
            .chain(manifest.layers())
            .collect();
        let total = blobs.iter().map(|blob| blob.size()).sum();
        let cached_bytes = blobs
            .iter()
            .filter(|blob| layout.has_blob(blob.digest()))
            .map(|blob| blob.size())
            .sum();
        progress.plan(manifest.layers().len(), total, cached_bytes);
        for (number, blob) in blobs.iter().enumerate() {
            if !layout.has_blob(blob.digest()) {
                fetch_blob(&client, reference, cache, blob, progress)
                    .await
                    .map_err(|err| match err {
                        FetchError::Registry(err) => failed(err),
                        FetchError::Other(err) => err,
                    })?;
            }
            if number > 0 {
                progress.layer_done();
            }
        }
        let mut entry = top_descriptor;
        entry.set_annotations(Some([(REF_NAME.to_owned(), reference.whole())].into()));
        layout.name(entry)?;
        Ok(Pulled::Fetched(top_digest))
    }

    /// The client for the registry of `reference`, logged in: https first; http where it is
    /// allowed and https does not answer.
    async fn client(
        &self,
        reference: &Reference,
        credentials: &Credentials,
    ) -> Result<std::rc::Rc<Client>> {
        let host = reference.resolve_registry().to_owned();
        if let Some(client) = self.clients.borrow().get(&host) {
            return Ok(client.clone());
        }
        // reqwest's TLS needs a process-wide crypto provider; a second install is refused
        // harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let make = |protocol| {
            Client::new(ClientConfig {
                protocol,
                platform_resolver: None,
                connect_timeout: Some(CONNECT_TIMEOUT),
                read_timeout: Some(READ_TIMEOUT),
                user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")),
                ..ClientConfig::default()
            })
        };
        let https = make(ClientProtocol::Https);
        let client = match https
            .auth(reference, &credentials.auth, RegistryOperation::Pull)
            .await
        {
            Ok(_) => https,
            Err(OciDistributionError::RequestError(https_err))
                if http_allowed(&host, &self.options.insecure) =>
            {
                // As Docker does for such registries: https first, then plain http, if a
                // registry answers there. When nothing listens, http's error says so; when
                // something answered https but not as hoped (an untrusted certificate),
                // both are told.
                match answers_http(&host).await {
                    Ok(None) => {
                        let http = make(ClientProtocol::Http);
                        http.auth(reference, &credentials.auth, RegistryOperation::Pull)
                            .await
                            .map_err(|err| explain(err, reference, credentials))?;
                        http
                    }
                    Ok(Some(status)) => bail!(
                        "cannot speak to the registry {host}: over https: {}; over http it \
                         answers {status}, not as a registry",
                        root_cause(&https_err)
                    ),
                    Err(err) => {
                        return Err(explain(
                            OciDistributionError::RequestError(err),
                            reference,
                            credentials,
                        ))
                    }
                }
            }
            Err(err) => return Err(explain(err, reference, credentials)),
        };
        let client = std::rc::Rc::new(client);
        self.clients.borrow_mut().insert(host, client.clone());
        Ok(client)
    }
}

/// Whether a registry answers plain http at `host`: `None` when it does (`/v2/` answers 200,
/// or 401 asking for a login), else the status something else answered with.
async fn answers_http(host: &str) -> Result<Option<reqwest::StatusCode>, reqwest::Error> {
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()?;
    let status = client
        .get(format!("http://{host}/v2/"))
        .send()
        .await?
        .status();
    Ok(match status.as_u16() {
        200 | 401 => None,
        _ => Some(status),
    })
}

/// Whether `host` (`NAME[:PORT]`) may be spoken to over http: it is on this machine, or
/// `insecure` names it (with or without its port).
fn http_allowed(host: &str, insecure: &[String]) -> bool {
    let (name, _) = split_host(host);
    insecure
        .iter()
        .any(|allowed| allowed == host || allowed == name)
        || name == "localhost"
        || name
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// `NAME[:PORT]` split in two; a bracketed IPv6 address loses its brackets.
fn split_host(host: &str) -> (&str, Option<&str>) {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name, Some(port))
        }
        _ => (host, None),
    };
    (name.trim_start_matches('[').trim_end_matches(']'), port)
}

/// What a pull did, and the digest the cache's entry names.
#[derive(Debug)]
enum Pulled {
    Fetched(String),
    /// `--pull` found the tag naming what the cache has.
    UpToDate(String),
}

/// Why a blob was not fetched: the registry's answer (which the caller explains with the
/// login used), or anything else.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Registry(#[from] OciDistributionError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<CommitError> for FetchError {
    fn from(err: CommitError) -> Self {
        FetchError::Other(err.into())
    }
}

/// Downloads one blob into the cache, resuming a partial download left there; when a resumed
/// download turns out not to match its digest (the kept bytes were wrong), it is started over
/// once from the first byte.
async fn fetch_blob(
    client: &Client,
    reference: &Reference,
    cache: &Path,
    blob: &Descriptor,
    progress: &mut PullProgress,
) -> Result<(), FetchError> {
    let digest = blob.digest();
    let mut ingest = Ingest::open(cache, digest, blob.size())?;
    let resumed = ingest.offset();
    progress.bytes(resumed);
    download(client, reference, &mut ingest, blob, progress).await?;
    match ingest.commit() {
        Err(CommitError::Mismatch(_)) if resumed > 0 => {
            progress.rewind(blob.size());
            let mut ingest = Ingest::open(cache, digest, blob.size())?;
            ingest.restart()?;
            download(client, reference, &mut ingest, blob, progress).await?;
            Ok(ingest.commit()?)
        }
        other => Ok(other?),
    }
}

/// Streams the rest of `blob` into `ingest` (from its offset, or whole when the registry does
/// not resume).
async fn download(
    client: &Client,
    reference: &Reference,
    ingest: &mut Ingest,
    blob: &Descriptor,
    progress: &mut PullProgress,
) -> Result<(), FetchError> {
    let digest = blob.digest().to_string();
    let none = None;
    let layer = LayerDescriptor {
        digest: &digest,
        urls: &none,
    };
    let offset = ingest.offset();
    if offset == blob.size() {
        return Ok(());
    }
    let mut stream = if offset == 0 {
        client.pull_blob_stream(reference, &layer).await?
    } else {
        match client
            .pull_blob_stream_partial(reference, &layer, offset, None)
            .await?
        {
            BlobResponse::Partial(stream) => stream,
            BlobResponse::Full(stream) => {
                progress.rewind(offset);
                ingest.restart()?;
                stream
            }
        }
    };
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                ingest.write(&bytes)?;
                progress.bytes(bytes.len() as u64);
            }
            // The client checks the digest at the end too; the ingest's own check, which
            // also drops the wrong bytes, says it the same way for every download.
            Err(_) if ingest.offset() == blob.size() => break,
            Err(err) => {
                return Err(anyhow!(
                    "the download of blob {digest} stopped after {} of {} bytes: {}; the next \
                     pull resumes it",
                    ingest.offset(),
                    blob.size(),
                    chain(&err)
                )
                .into())
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kind {
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

/// The media type a manifest declares; an index without one is known by its `manifests`.
fn media_type(bytes: &[u8]) -> Result<String> {
    let kind: Kind = serde_json::from_slice(bytes).context("not a JSON manifest")?;
    Ok(match (kind.media_type, kind.manifests) {
        (Some(media_type), _) => media_type,
        (None, Some(_)) => OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned(),
        (None, None) => OCI_IMAGE_MEDIA_TYPE.to_owned(),
    })
}

/// The stored bytes hash to the digest the registry gave (the client has checked it against
/// the reference's digest, when it names one).
fn check_digest(stored: &Descriptor, digest: &str) -> Result<()> {
    let digest = Digest::try_from(digest).map_err(|err| anyhow!("digest `{digest}`: {err}"))?;
    if stored.digest() != &digest {
        bail!(
            "the manifest does not match its digest {digest}: its content is {}",
            stored.digest()
        );
    }
    Ok(())
}

/// A client error said the way a user can act on it.
fn explain(
    err: OciDistributionError,
    reference: &Reference,
    credentials: &Credentials,
) -> anyhow::Error {
    let host = reference.resolve_registry();
    let name = reference.whole();
    let anonymous = credentials.username.is_none();
    let login = credentials.login();
    let wanted = format!(
        "give a login with --registry-auth {}=USER:PASSWORD or in ~/.docker/config.json",
        reference.registry()
    );
    match err {
        OciDistributionError::RequestError(err) if err.is_connect() || err.is_timeout() => {
            anyhow!(
                "cannot reach the registry {}: {}",
                with_port(host, &err),
                root_cause(&err)
            )
        }
        OciDistributionError::RequestError(err) => {
            anyhow!("the registry {host} failed: {}", chain(&err))
        }
        OciDistributionError::UnauthorizedError { .. } if anonymous => anyhow!(
            "the registry {host} wants a login for `{name}` (or it does not exist): {wanted}"
        ),
        OciDistributionError::UnauthorizedError { .. } => {
            anyhow!("the registry {host} refused {login} for `{name}`")
        }
        OciDistributionError::AuthenticationFailure(reason) => anyhow!(
            "the registry {host}'s token service refused {login}: {}",
            reason.trim()
        ),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let message = envelope
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            if codes.iter().any(|code| {
                matches!(
                    code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            }) {
                anyhow!(
                    "`{name}` is not in the registry {host} (unknown repository or tag): {message}"
                )
            } else if codes
                .iter()
                .any(|code| matches!(code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                if anonymous {
                    anyhow!("the registry {host} refused an anonymous pull of `{name}`: {message}; {wanted}")
                } else {
                    anyhow!("the registry {host} refused {login} for `{name}`: {message}")
                }
            } else {
                anyhow!("the registry {host} refused `{name}`: {message}")
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => {
            anyhow!("`{name}` is not in the registry {host} (unknown repository or tag)")
        }
        OciDistributionError::ServerError { code, message, .. } => {
            anyhow!("the registry {host} answered {code}: {}", message.trim())
        }
        OciDistributionError::DigestError(err) => {
            anyhow!("what {host} sent for `{name}` does not match its digest: {err}")
        }
        other => anyhow!("{host}: {other}"),
    }
}

/// `host` with the port the request went to, when it names none.
fn with_port(host: &str, err: &reqwest::Error) -> String {
    if split_host(host).1.is_some() {
        return host.to_owned();
    }
    match err.url().map(reqwest::Url::scheme) {
        Some("http") => format!("{host}:80"),
        _ => format!("{host}:443"),
    }
}

/// The innermost cause of `err` (for a connection: what the system said).
fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// An error and its causes on one line (each cause once).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_this_machine_or_when_named() {
        for local in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.8.0.1",
            "[::1]:5000",
        ] {
            assert!(http_allowed(local, &[]), "{local}");
        }
        for remote in [
            "docker.io",
            "registry.example:5000",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example",
        ] {
            assert!(!http_allowed(remote, &[]), "{remote}");
        }
        let insecure = ["registry.example".to_owned(), "10.0.0.1:5000".to_owned()];
        assert!(http_allowed("registry.example:5000", &insecure));
        assert!(http_allowed("registry.example", &insecure));
        assert!(http_allowed("10.0.0.1:5000", &insecure));
        assert!(!http_allowed("10.0.0.1:6000", &insecure));
        assert!(!http_allowed("other.example", &insecure));
    }
}
