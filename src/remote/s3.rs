//! [`ObjectStore`] for S3 and S3-compatible stores (Garage, MinIO, Ceph,
//! R2, …).
//!
//! # Why rusty-s3 and ureq
//!
//! `gocache prog` is thread-based: a get is answered on the thread that read
//! it, and a remote get is one blocking HTTP round trip. `rusty-s3` signs
//! requests (SigV4, as presigned URLs) and parses S3's XML without doing any
//! I/O itself, and `ureq` is a small blocking HTTP/1.1 client with a pool of
//! kept-alive connections and per-request timeouts. Together they add no
//! async runtime (object_store and opendal both bring tokio, hyper and
//! reqwest) and much less build time; see the remote tier's notes in
//! `DESIGN.md` for the measurement.
//!
//! # Configuration
//!
//! [`S3Config::resolve`] reads the usual AWS variables, each overridable
//! (flags win): `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS
//! itself (`https://s3.<region>.amazonaws.com`); `AWS_REGION`, else
//! `AWS_DEFAULT_REGION`, else `us-east-1`; `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (no key at all means
//! anonymous, unsigned requests: a public bucket, read-only). Requests use
//! path-style addressing (`endpoint/bucket/key`) for any endpoint that is
//! not AWS, and for bucket names with dots (which break TLS on
//! virtual-hosted names); virtual-hosted style on AWS otherwise.
//!
//! # Timeouts
//!
//! Every request has a connect timeout and a limit on the whole request;
//! requests with a body get more time in proportion to its size, at a
//! minimum transfer rate. A connection that carries no byte for a while
//! (a stalled store) fails sooner, whatever the whole request's limit.
//! Nothing waits unbounded.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::location::RemoteUrl;
use super::store::{DeleteReport, Metadata, ObjectMeta, ObjectStore, Op, PutBody, StoreError};
use crate::model::UnixTime;

/// Access keys for S3.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"…")
            .field("session_token", &self.session_token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Time limits of every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (TCP and TLS).
    pub connect: Duration,
    /// A whole request without a body worth counting (headers, small
    /// bodies, listings).
    pub request: Duration,
    /// Bodies get `size / min_rate` seconds on top of `request`.
    pub min_rate_bytes_per_s: u64,
    /// The longest wait for any one read or write on the connection (a
    /// response that stops mid-body, a store that stops reading a put).
    /// Batch deletes, which a store may answer only when done, wait up to
    /// `request` instead.
    pub stall: Duration,
    /// Extra attempts after a connection failure or an HTTP 500/503 (not
    /// after a timeout: a slow store should not be waited for twice).
    pub retries: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(3),
            request: Duration::from_secs(30),
            min_rate_bytes_per_s: 1 << 20,
            stall: Duration::from_secs(10),
            retries: 1,
        }
    }
}

impl Timeouts {
    /// The whole-request limit for a body of `len` bytes.
    pub fn for_len(&self, len: u64) -> Duration {
        let extra = len / self.min_rate_bytes_per_s.max(1);
        self.request.saturating_add(Duration::from_secs(extra))
    }
}

/// Values given on the command line, which win over the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Overrides {
    /// The endpoint (`https://host[:port]`).
    pub endpoint: Option<String>,
    /// The region used in signatures.
    pub region: Option<String>,
    /// Access keys (both or neither).
    pub credentials: Option<S3Credentials>,
    /// Force path-style (`true`) or virtual-hosted (`false`) addressing.
    pub path_style: Option<bool>,
    /// Time limits; defaults when `None`.
    pub timeouts: Option<Timeouts>,
}

/// Everything needed to talk to one bucket, resolved and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket and prefix.
    pub url: RemoteUrl,
    /// The endpoint, `scheme://host[:port]`.
    pub endpoint: url::Url,
    /// The region used in signatures.
    pub region: String,
    /// `None`: anonymous, unsigned requests.
    pub credentials: Option<S3Credentials>,
    /// Path-style addressing.
    pub path_style: bool,
    /// Time limits.
    pub timeouts: Timeouts,
}

/// Why the S3 configuration is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The endpoint is not an `http(s)://host[:port]` URL.
    #[error(
        "endpoint `{endpoint}` (from {from}) is invalid: {why}; expected http(s)://HOST[:PORT]"
    )]
    BadEndpoint {
        /// As given.
        endpoint: String,
        /// Where it came from (a variable or a flag).
        from: &'static str,
        /// What is wrong.
        why: EndpointProblem,
    },
    /// Only half of a key pair.
    #[error("{0} is set but {1} is not: set both, or neither for anonymous access")]
    HalfCredentials(&'static str, &'static str),
    /// A region that cannot appear in a signature.
    #[error("region `{0}` is invalid: expected letters, digits and hyphens (e.g. us-east-1)")]
    BadRegion(String),
}

impl S3Config {
    /// Resolves the configuration for `url` from `overrides`, else the
    /// environment as `getenv` reads it (injected, for tests). Empty
    /// variables count as unset.
    pub fn resolve(
        url: RemoteUrl,
        overrides: &S3Overrides,
        getenv: impl Fn(&str) -> Option<OsString>,
    ) -> Result<S3Config, ConfigError> {
        let var = |name: &str| {
            getenv(name)
                .and_then(|v| v.into_string().ok())
                .filter(|v| !v.is_empty())
        };
        let region = overrides
            .region
            .clone()
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        if region.is_empty()
            || !region
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(ConfigError::BadRegion(region));
        }
        let (endpoint, from) = if let Some(e) = &overrides.endpoint {
            (Some(e.clone()), "--endpoint")
        } else if let Some(e) = var("AWS_ENDPOINT_URL_S3") {
            (Some(e), "AWS_ENDPOINT_URL_S3")
        } else if let Some(e) = var("AWS_ENDPOINT_URL") {
            (Some(e), "AWS_ENDPOINT_URL")
        } else {
            (None, "")
        };
        let (endpoint, aws) = match endpoint {
            Some(e) => {
                let parsed = parse_endpoint(&e).map_err(|why| ConfigError::BadEndpoint {
                    endpoint: e.clone(),
                    from,
                    why,
                })?;
                let aws = parsed
                    .host_str()
                    .is_some_and(|h| h == "amazonaws.com" || h.ends_with(".amazonaws.com"));
                (parsed, aws)
            }
            None => {
                let e = format!("https://s3.{region}.amazonaws.com");
                (
                    url::Url::parse(&e).expect("a checked region makes a valid URL"),
                    true,
                )
            }
        };
        let credentials = match &overrides.credentials {
            Some(c) => Some(c.clone()),
            None => match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => Some(S3Credentials {
                    access_key_id: id,
                    secret_access_key: secret,
                    session_token: var("AWS_SESSION_TOKEN"),
                }),
                (Some(_), None) => {
                    return Err(ConfigError::HalfCredentials(
                        "AWS_ACCESS_KEY_ID",
                        "AWS_SECRET_ACCESS_KEY",
                    ));
                }
                (None, Some(_)) => {
                    return Err(ConfigError::HalfCredentials(
                        "AWS_SECRET_ACCESS_KEY",
                        "AWS_ACCESS_KEY_ID",
                    ));
                }
                (None, None) => None,
            },
        };
        let path_style = overrides
            .path_style
            .unwrap_or(!aws || url.bucket.contains('.'));
        Ok(S3Config {
            url,
            endpoint,
            region,
            credentials,
            path_style,
            timeouts: overrides.timeouts.unwrap_or_default(),
        })
    }
}

/// Why a remote could not be opened: bad input (exit code 2 in the CLI).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The `s3://` URL.
    #[error(transparent)]
    Url(#[from] super::location::UrlError),
    /// The endpoint, region or credentials.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Parses `url`, resolves its configuration from `overrides` and the
/// environment (`getenv`), and makes the store. Makes no request.
pub fn open(
    url: &str,
    overrides: &S3Overrides,
    getenv: impl Fn(&str) -> Option<OsString>,
) -> Result<S3Store, OpenError> {
    let url = RemoteUrl::parse(url)?;
    Ok(S3Store::new(S3Config::resolve(url, overrides, getenv)?))
}

/// What is wrong with an endpoint (see [`ConfigError::BadEndpoint`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointProblem {
    /// Not a URL.
    #[error("{0}")]
    NotAUrl(#[from] url::ParseError),
    /// Another scheme.
    #[error("scheme `{0}` is not http or https")]
    Scheme(String),
    /// No host.
    #[error("it has no host")]
    NoHost,
    /// Credentials in the URL (they belong in the AWS variables).
    #[error("it holds a user name or password")]
    UserInfo,
    /// A query or fragment.
    #[error("it has a query or fragment")]
    Query,
    /// A path (the bucket and prefix belong in the `s3://` URL).
    #[error("it has a path (`{0}`)")]
    Path(String),
}

fn parse_endpoint(e: &str) -> Result<url::Url, EndpointProblem> {
    let u = url::Url::parse(e)?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(EndpointProblem::Scheme(u.scheme().to_owned()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(EndpointProblem::NoHost);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(EndpointProblem::UserInfo);
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(EndpointProblem::Query);
    }
    if u.path() != "/" && !u.path().is_empty() {
        return Err(EndpointProblem::Path(u.path().to_owned()));
    }
    Ok(u)
}

/// How long a signed URL stays valid. Requests are signed just before they
/// are sent; this only has to cover clock skew and the request itself.
const SIGNATURE_TTL: Duration = Duration::from_secs(15 * 60);

/// The most objects one DeleteObjects request may name (S3's limit).
const DELETE_BATCH: usize = 1000;

/// The most bytes of an error body read for its code and message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// The most bytes of one listing page (1,000 keys are about 300 KB).
const LIST_PAGE_LIMIT: u64 = 16 << 20;

/// What S3 puts before a user metadata name in a header.
const META_PREFIX: &str = "x-amz-meta-";

/// An S3 bucket and prefix, as an [`ObjectStore`].
pub struct S3Store {
    url: RemoteUrl,
    bucket: Bucket,
    credentials: Option<Credentials>,
    agent: ureq::Agent,
    timeouts: Timeouts,
    name: String,
    page_size: usize,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("name", &self.name).finish()
    }
}

impl S3Store {
    /// A store for `config`. Makes no request.
    pub fn new(config: S3Config) -> S3Store {
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.url.bucket.clone(),
            config.region.clone(),
        )
        .expect("a checked http(s) endpoint with a host");
        let credentials = config.credentials.as_ref().map(|c| match &c.session_token {
            Some(t) => Credentials::new_with_token(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                t.clone(),
            ),
            None => Credentials::new(c.access_key_id.clone(), c.secret_access_key.clone()),
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.timeouts.connect))
            .timeout_global(Some(config.timeouts.request))
            .timeout_per_read(Some(config.timeouts.stall))
            .timeout_per_write(Some(config.timeouts.stall))
            .max_redirects(0)
            .user_agent(concat!("gocache/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(64)
            .build()
            .into();
        let name = format!(
            "{} at {}",
            config.url,
            config.endpoint.as_str().trim_end_matches('/')
        );
        S3Store {
            url: config.url,
            bucket,
            credentials,
            agent,
            timeouts: config.timeouts,
            name,
            page_size: 1000,
        }
    }

    /// Lists with pages of `n` keys (S3's default and maximum is 1,000);
    /// for tests of pagination.
    pub fn with_page_size(mut self, n: usize) -> S3Store {
        self.page_size = n.clamp(1, 1000);
        self
    }

    /// Runs one request, retrying as [`Timeouts::retries`] allows.
    fn send(
        &self,
        op: Op,
        key: &str,
        body_len: u64,
        mut attempt: impl FnMut(Duration) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, StoreError> {
        let timeout = self.timeouts.for_len(body_len);
        let mut tries = 0;
        loop {
            let retry = tries < self.timeouts.retries;
            tries += 1;
            match attempt(timeout) {
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    if retry && (s == 500 || s == 503) {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    return Ok(resp);
                }
                Err(err) => {
                    if let ureq::Error::Io(e) = &err
                        && is_local_body_error(e)
                    {
                        let e = std::io::Error::new(e.kind(), e.to_string());
                        return Err(Self::local(op, key, e));
                    }
                    if retry && !matches!(err, ureq::Error::Timeout(_)) {
                        continue;
                    }
                    return Err(StoreError::Unreachable {
                        store: self.name.clone(),
                        op,
                        key: key.to_owned(),
                        timeout_s: timeout.as_secs(),
                        stall_s: self.timeouts.stall.as_secs(),
                        cause: Box::new(err),
                    });
                }
            }
        }
    }

    /// Turns an error status into a [`StoreError`], reading the S3 error
    /// document for its code and message.
    fn status_error(
        &self,
        op: Op,
        key: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> StoreError {
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(ERROR_BODY_LIMIT)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        let code = xml_field(&body, "Code").unwrap_or_else(|| {
            resp.status()
                .canonical_reason()
                .unwrap_or("no reason")
                .replace(' ', "")
        });
        let message = xml_field(&body, "Message").unwrap_or_else(|| "no message".to_owned());
        let auth_code = matches!(
            code.as_str(),
            "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "ExpiredToken"
                | "TokenRefreshRequired"
                | "AuthorizationHeaderMalformed"
                | "AuthorizationQueryParametersError"
        );
        if code == "NoSuchBucket" {
            return StoreError::NoSuchBucket {
                store: self.name.clone(),
            };
        }
        if status == 401 || status == 403 || (status == 400 && auth_code) {
            // AWS says which credential is wrong in its code; other stores
            // answer AccessDenied and say it in the message.
            let lower = message.to_ascii_lowercase();
            let wrong_credentials = auth_code
                || [
                    "signature",
                    "no such key",
                    "access key",
                    "invalid key",
                    "expired",
                ]
                .iter()
                .any(|p| lower.contains(p));
            let hint = if code.starts_with("Authorization") {
                "check AWS_REGION: the store signs with another region"
            } else if self.credentials.is_none() {
                "no credentials were given and the store refuses anonymous requests: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            } else if wrong_credentials {
                "check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and AWS_REGION"
            } else if matches!(op, Op::Put | Op::Delete) {
                "these credentials may not write here: give them write access (`gocache remote trim` needs it), or serve builds with them read-only (`gocache prog --remote URL --remote-read-only`)"
            } else {
                "these credentials may not read this bucket or prefix: check their permissions (or AWS_ACCESS_KEY_ID)"
            };
            return StoreError::Denied {
                store: self.name.clone(),
                op,
                key: key.to_owned(),
                code,
                message,
                hint,
            };
        }
        StoreError::Http {
            store: self.name.clone(),
            op,
            key: key.to_owned(),
            status,
            code,
            message,
        }
    }

    fn bad(&self, op: Op, key: &str, what: impl Into<String>) -> StoreError {
        StoreError::BadResponse {
            store: self.name.clone(),
            op,
            key: key.to_owned(),
            what: what.into(),
        }
    }

    fn local(op: Op, key: &str, cause: std::io::Error) -> StoreError {
        StoreError::Local {
            op,
            key: key.to_owned(),
            cause,
        }
    }
}

/// A body read error raised by our own reader (a put's file), which ureq
/// reports as I/O: marked so it is not mistaken for the network.
#[derive(Debug)]
struct LocalBodyError(std::io::Error);

impl std::fmt::Display for LocalBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the body: {}", self.0)
    }
}

impl std::error::Error for LocalBodyError {}

fn is_local_body_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<LocalBodyError>())
}

/// A put's body as ureq reads it: exactly `len` bytes of `inner`, its
/// errors marked as local ([`LocalBodyError`]), and a reader that ends
/// early or goes on past `len` an error too.
struct LocalBody<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> LocalBody<R> {
    fn new(inner: R, len: u64) -> LocalBody<R> {
        LocalBody { inner, pos: 0, len }
    }
}

impl<R: Read> Read for LocalBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let local = |e| std::io::Error::other(LocalBodyError(e));
        let left = self.len - self.pos;
        if left == 0 {
            // The end: the reader must be at its end too.
            let mut probe = [0u8; 1];
            return loop {
                match self.inner.read(&mut probe) {
                    Ok(0) => break Ok(0),
                    Ok(_) => {
                        break Err(local(std::io::Error::other(format!(
                            "the body goes on past its {} bytes",
                            self.len
                        ))));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(local(e)),
                }
            };
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        loop {
            return match self.inner.read(&mut buf[..n]) {
                Ok(0) => Err(local(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the body ended at {} of {} bytes", self.pos, self.len),
                ))),
                Ok(got) => {
                    self.pos += got as u64;
                    Ok(got)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(local(e)),
            };
        }
    }
}

/// The text of the first `<name>…</name>` in an S3 error document,
/// unescaped. Error documents are tiny and flat; this is all that is
/// needed of them.
fn xml_field(doc: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&close)?;
    Some(xml_unescape(&doc[start..end]))
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Parses S3's ISO 8601 `LastModified` (`2026-01-02T03:04:05.000Z`).
fn parse_iso_time(s: &str) -> Option<UnixTime> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp())
}

/// Parses an HTTP date (`Fri, 02 Jan 2026 03:04:05 GMT`).
fn parse_http_time(s: &str) -> Option<UnixTime> {
    chrono::DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|t| t.timestamp())
}

impl ObjectStore for S3Store {
    fn get_with_meta(
        &self,
        key: &str,
        max_len: u64,
        sink: &mut dyn Write,
    ) -> Result<Option<(u64, Metadata)>, StoreError> {
        let full = self.url.key(key);
        let mut resp = self.send(Op::Get, key, max_len, |timeout| {
            let url = self
                .bucket
                .get_object(self.credentials.as_ref(), &full)
                .sign(SIGNATURE_TTL);
            self.agent
                .get(url.as_str())
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call()
        })?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                // NoSuchBucket also comes as a 404: tell it apart.
                let err = self.status_error(Op::Get, key, resp);
                return match err {
                    StoreError::NoSuchBucket { .. } => Err(err),
                    _ => Ok(None),
                };
            }
            _ => return Err(self.status_error(Op::Get, key, resp)),
        }
        let announced = resp.body().content_length();
        if let Some(len) = announced
            && len > max_len
        {
            return Err(StoreError::TooLarge {
                store: self.name.clone(),
                key: key.to_owned(),
                size: len,
                limit: max_len,
            });
        }
        let meta: Metadata = resp
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                let name = name.as_str().strip_prefix(META_PREFIX)?;
                Some((name.to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let unreachable =
            |cause: Box<dyn std::error::Error + Send + Sync>| StoreError::Unreachable {
                store: self.name.clone(),
                op: Op::Get,
                key: key.to_owned(),
                timeout_s: self.timeouts.for_len(max_len).as_secs(),
                stall_s: self.timeouts.stall.as_secs(),
                cause,
            };
        let mut reader = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unreachable(Box::new(e))),
            };
            total += n as u64;
            if total > max_len {
                return Err(StoreError::TooLarge {
                    store: self.name.clone(),
                    key: key.to_owned(),
                    size: total,
                    limit: max_len,
                });
            }
            sink.write_all(&buf[..n])
                .map_err(|e| Self::local(Op::Get, key, e))?;
        }
        // A connection closed early: the network's fault, not the object's.
        if let Some(len) = announced
            && total < len
        {
            return Err(unreachable(
                format!("the connection ended after {total} of {len} bytes").into(),
            ));
        }
        Ok(Some((total, meta)))
    }

    fn put_with_meta(
        &self,
        key: &str,
        body: PutBody<'_>,
        meta: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let full = self.url.key(key);
        let len = body.len();
        let headers: Vec<(String, &str)> = meta
            .iter()
            .map(|(name, value)| {
                (
                    format!("{META_PREFIX}{}", name.to_ascii_lowercase()),
                    *value,
                )
            })
            .collect();
        let resp = self.send(Op::Put, key, len, |timeout| {
            let mut action = self.bucket.put_object(self.credentials.as_ref(), &full);
            // Signed, as AWS requires of every x-amz-* header.
            for (name, value) in &headers {
                action.headers_mut().insert(name.as_str(), *value);
            }
            let url = action.sign(SIGNATURE_TTL);
            let mut req = self.agent.put(url.as_str()).header("content-length", len);
            for (name, value) in &headers {
                req = req.header(name.as_str(), *value);
            }
            let req = req.config().timeout_global(Some(timeout)).build();
            match body {
                PutBody::Bytes(b) => req.send(b),
                PutBody::File { file, len } => {
                    let mut r = LocalBody::new(super::codec::FileReader::new(file, len), len);
                    req.send(ureq::SendBody::from_reader(&mut r))
                }
                PutBody::Stream { len, open } => match open() {
                    Ok(reader) => {
                        let mut r = LocalBody::new(reader, len);
                        req.send(ureq::SendBody::from_reader(&mut r))
                    }
                    Err(e) => Err(ureq::Error::Io(std::io::Error::other(LocalBodyError(e)))),
                },
            }
        })?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(self.status_error(Op::Put, key, resp)),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let full = self.url.key(key);
        let resp = self.send(Op::Head, key, 0, |timeout| {
            let url = self
                .bucket
                .head_object(self.credentials.as_ref(), &full)
                .sign(SIGNATURE_TTL);
            self.agent
                .head(url.as_str())
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call()
        })?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.status_error(Op::Head, key, resp)),
        }
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
        let size = header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.bad(Op::Head, key, "no Content-Length"))?;
        let last_modified = header("last-modified")
            .and_then(parse_http_time)
            .ok_or_else(|| self.bad(Op::Head, key, "no valid Last-Modified"))?;
        Ok(Some(ObjectMeta {
            key: key.to_owned(),
            size,
            last_modified,
        }))
    }

    fn list(&self, prefix: &str, each: &mut dyn FnMut(ObjectMeta)) -> Result<u64, StoreError> {
        let full_prefix = self.url.key(prefix);
        let mut token: Option<String> = None;
        let mut count = 0u64;
        loop {
            let mut resp = self.send(Op::List, prefix, 0, |timeout| {
                let mut action = self.bucket.list_objects_v2(self.credentials.as_ref());
                action.with_prefix(full_prefix.as_str());
                action.with_max_keys(self.page_size);
                if let Some(t) = &token {
                    action.with_continuation_token(t.as_str());
                }
                let url = action.sign(SIGNATURE_TTL);
                self.agent
                    .get(url.as_str())
                    .config()
                    .timeout_global(Some(timeout))
                    .build()
                    .call()
            })?;
            if resp.status().as_u16() != 200 {
                return Err(self.status_error(Op::List, prefix, resp));
            }
            let text = resp
                .body_mut()
                .with_config()
                .limit(LIST_PAGE_LIMIT)
                .read_to_string()
                .map_err(|e| StoreError::Unreachable {
                    store: self.name.clone(),
                    op: Op::List,
                    key: prefix.to_owned(),
                    timeout_s: self.timeouts.request.as_secs(),
                    stall_s: self.timeouts.stall.as_secs(),
                    cause: Box::new(e),
                })?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text)
                .map_err(|e| self.bad(Op::List, prefix, format!("listing XML: {e}")))?;
            for obj in page.contents {
                let Some(rel) = self.url.strip(&obj.key) else {
                    return Err(self.bad(
                        Op::List,
                        prefix,
                        format!("key {} is outside the prefix asked for", obj.key),
                    ));
                };
                let last_modified = obj
                    .last_modified
                    .as_deref()
                    .and_then(parse_iso_time)
                    .ok_or_else(|| {
                        self.bad(
                            Op::List,
                            prefix,
                            format!("{}: no valid LastModified", obj.key),
                        )
                    })?;
                each(ObjectMeta {
                    key: rel.to_owned(),
                    size: obj.size.unwrap_or(0),
                    last_modified,
                });
                count += 1;
            }
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(count),
            }
        }
    }

    fn delete_many(&self, keys: &[String]) -> Result<DeleteReport, StoreError> {
        let mut report = DeleteReport::default();
        for chunk in keys.chunks(DELETE_BATCH) {
            let ids: Vec<rusty_s3::actions::ObjectIdentifier> = chunk
                .iter()
                .map(|k| rusty_s3::actions::ObjectIdentifier::new(self.url.key(k)))
                .collect();
            let first = chunk[0].as_str();
            let mut resp = self.send(Op::Delete, first, 0, |timeout| {
                let mut action = self
                    .bucket
                    .delete_objects(self.credentials.as_ref(), ids.iter());
                action.set_quiet(true);
                let url = action.sign(SIGNATURE_TTL);
                let (body, md5) = action.body_with_md5();
                self.agent
                    .post(url.as_str())
                    .header("content-md5", md5)
                    .header("content-type", "application/xml")
                    .config()
                    .timeout_global(Some(timeout))
                    // A store may answer a batch delete only when it is done.
                    .timeout_per_read(Some(self.timeouts.request))
                    .build()
                    .send(body.as_bytes())
            })?;
            if resp.status().as_u16() != 200 {
                return Err(self.status_error(Op::Delete, first, resp));
            }
            let text = resp
                .body_mut()
                .with_config()
                .limit(LIST_PAGE_LIMIT)
                .read_to_string()
                .map_err(|e| StoreError::Unreachable {
                    store: self.name.clone(),
                    op: Op::Delete,
                    key: first.to_owned(),
                    timeout_s: self.timeouts.request.as_secs(),
                    stall_s: self.timeouts.stall.as_secs(),
                    cause: Box::new(e),
                })?;
            let parsed = rusty_s3::actions::DeleteObjectsResponse::parse(&text)
                .map_err(|e| self.bad(Op::Delete, first, format!("DeleteObjects XML: {e}")))?;
            let mut failed = 0u64;
            for e in parsed.errors {
                if e.code == "NoSuchKey" {
                    continue;
                }
                failed += 1;
                let key = self.url.strip(&e.key).unwrap_or(&e.key).to_owned();
                report
                    .failed
                    .push((key, format!("{}: {}", e.code, e.message)));
            }
            report.deleted += chunk.len() as u64 - failed;
        }
        Ok(report)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).map(OsString::from)
    }

    fn url() -> RemoteUrl {
        RemoteUrl::parse("s3://go-cache/ci").unwrap()
    }

    #[test]
    fn resolves_aws_defaults() {
        let c = S3Config::resolve(url(), &S3Overrides::default(), env(&[])).unwrap();
        assert_eq!(c.endpoint.as_str(), "https://s3.us-east-1.amazonaws.com/");
        assert_eq!(c.region, "us-east-1");
        assert!(!c.path_style, "AWS uses virtual-hosted addressing");
        assert_eq!(c.credentials, None);

        let c = S3Config::resolve(
            url(),
            &S3Overrides::default(),
            env(&[
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
                ("AWS_SESSION_TOKEN", "token"),
            ]),
        )
        .unwrap();
        assert_eq!(c.endpoint.as_str(), "https://s3.eu-west-1.amazonaws.com/");
        let creds = c.credentials.unwrap();
        assert_eq!(creds.access_key_id, "AKID");
        assert_eq!(creds.session_token.as_deref(), Some("token"));
        assert!(!format!("{creds:?}").contains("wJalr"), "{creds:?}");

        let dotted = RemoteUrl::parse("s3://go.cache/x").unwrap();
        let c = S3Config::resolve(dotted, &S3Overrides::default(), env(&[])).unwrap();
        assert!(
            c.path_style,
            "dots in a bucket name break virtual-hosted TLS"
        );
    }

    #[test]
    fn endpoint_and_region_precedence() {
        let e = env(&[
            ("AWS_ENDPOINT_URL", "http://generic:1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3900"),
            ("AWS_REGION", "garage"),
            ("AWS_DEFAULT_REGION", "other"),
        ]);
        let c = S3Config::resolve(url(), &S3Overrides::default(), &e).unwrap();
        assert_eq!(c.endpoint.as_str(), "http://127.0.0.1:3900/");
        assert_eq!(c.region, "garage");
        assert!(c.path_style, "non-AWS endpoints use path-style addressing");

        let o = S3Overrides {
            endpoint: Some("https://minio.example:9000/".into()),
            region: Some("local".into()),
            path_style: Some(false),
            ..S3Overrides::default()
        };
        let c = S3Config::resolve(url(), &o, &e).unwrap();
        assert_eq!(c.endpoint.as_str(), "https://minio.example:9000/");
        assert_eq!(c.region, "local");
        assert!(!c.path_style);

        let c = S3Config::resolve(
            url(),
            &S3Overrides::default(),
            env(&[
                ("AWS_ENDPOINT_URL", "http://generic:1"),
                ("AWS_ENDPOINT_URL_S3", ""),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.endpoint.as_str(),
            "http://generic:1/",
            "empty counts as unset"
        );
    }

    #[test]
    fn bad_configuration_says_what_to_fix() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("AWS_ENDPOINT_URL", "localhost:3900")],
                "AWS_ENDPOINT_URL",
            ),
            (&[("AWS_ENDPOINT_URL", "ftp://host")], "not http or https"),
            (&[("AWS_ENDPOINT_URL", "http://host/path")], "has a path"),
            (&[("AWS_ENDPOINT_URL", "http://u:p@host")], "user name"),
            (
                &[("AWS_ACCESS_KEY_ID", "x")],
                "AWS_SECRET_ACCESS_KEY is not",
            ),
            (
                &[("AWS_SECRET_ACCESS_KEY", "x")],
                "AWS_ACCESS_KEY_ID is not",
            ),
            (&[("AWS_REGION", "us east")], "region `us east` is invalid"),
        ];
        for (vars, want) in cases {
            let err = S3Config::resolve(url(), &S3Overrides::default(), env(vars))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{vars:?}: {err}");
        }
    }

    #[test]
    fn open_checks_the_url_and_the_environment() {
        let store = open(
            "s3://go-cache/x",
            &S3Overrides::default(),
            env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]),
        )
        .unwrap();
        assert_eq!(store.describe(), "s3://go-cache/x at http://127.0.0.1:9");
        let err = open("gs://b/x", &S3Overrides::default(), env(&[])).unwrap_err();
        assert!(matches!(err, OpenError::Url(_)), "{err}");
        let err = open(
            "s3://bucket",
            &S3Overrides::default(),
            env(&[("AWS_ACCESS_KEY_ID", "x")]),
        )
        .unwrap_err();
        assert!(matches!(err, OpenError::Config(_)), "{err}");
    }

    #[test]
    fn timeouts_grow_with_the_body() {
        let t = Timeouts::default();
        assert_eq!(t.for_len(0), Duration::from_secs(30));
        assert_eq!(t.for_len(100 << 20), Duration::from_secs(130));
        let t = Timeouts {
            min_rate_bytes_per_s: 0,
            ..t
        };
        assert!(
            t.for_len(u64::MAX) > Duration::from_secs(30),
            "no division by zero"
        );
    }

    #[test]
    fn reads_s3_error_documents_and_times() {
        let doc = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>a &amp; b</Message></Error>";
        assert_eq!(xml_field(doc, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(xml_field(doc, "Message").as_deref(), Some("a & b"));
        assert_eq!(xml_field(doc, "Resource"), None);
        assert_eq!(parse_iso_time("2026-01-02T03:04:05.000Z"), Some(1767323045));
        assert_eq!(
            parse_http_time("Fri, 02 Jan 2026 03:04:05 GMT"),
            Some(1767323045)
        );
        assert_eq!(parse_iso_time("yesterday"), None);
    }
}
