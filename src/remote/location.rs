//! `s3://BUCKET/PREFIX`: where a remote tier lives.

use std::fmt;

/// A parsed remote URL: a bucket and a key prefix inside it.
///
/// Every object gocache writes lives under `PREFIX/` (or at the top of the
/// bucket when the prefix is empty), so one bucket can hold several
/// independent caches (per team, per Go version, per trust level).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteUrl {
    /// The bucket name.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/`; may be empty.
    pub prefix: String,
}

/// Why a remote URL was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://`.
    #[error("`{0}` is not a remote URL: expected s3://BUCKET or s3://BUCKET/PREFIX")]
    NotAUrl(String),
    /// A scheme other than `s3`.
    #[error(
        "`{0}://` remotes are not supported: use s3://BUCKET/PREFIX (any S3-compatible store; set AWS_ENDPOINT_URL for one that is not AWS)"
    )]
    UnsupportedScheme(String),
    /// The bucket name breaks S3's naming rules.
    #[error(
        "bucket name `{bucket}` in {url} is invalid: {why} (S3 bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)"
    )]
    BadBucket {
        /// The URL as given.
        url: String,
        /// The bucket part.
        bucket: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The prefix holds something gocache refuses in a key.
    #[error(
        "prefix `{prefix}` in {url} is invalid: {why} (use letters, digits and . _ - ~ separated by single slashes)"
    )]
    BadPrefix {
        /// The URL as given.
        url: String,
        /// The prefix part.
        prefix: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A query string, fragment or credentials in the URL.
    #[error(
        "{0}: a remote URL takes no user, query or fragment (credentials and endpoint come from the AWS_* environment variables or flags)"
    )]
    Extra(String),
}

/// The longest prefix accepted. S3 keys are at most 1,024 bytes; gocache's
/// own part (`o/` and 64 hex digits, or a use log's name) needs under 100.
pub const MAX_PREFIX_LEN: usize = 512;

impl RemoteUrl {
    /// Parses `s3://BUCKET` or `s3://BUCKET/PREFIX` (a trailing `/` is
    /// ignored).
    pub fn parse(s: &str) -> Result<RemoteUrl, UrlError> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(UrlError::NotAUrl(s.to_owned()));
        };
        if !scheme.eq_ignore_ascii_case("s3") {
            return Err(UrlError::UnsupportedScheme(scheme.to_owned()));
        }
        if rest.contains(['?', '#', '@']) {
            return Err(UrlError::Extra(s.to_owned()));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|why| UrlError::BadBucket {
            url: s.to_owned(),
            bucket: bucket.to_owned(),
            why,
        })?;
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        check_prefix(prefix).map_err(|why| UrlError::BadPrefix {
            url: s.to_owned(),
            prefix: prefix.to_owned(),
            why,
        })?;
        Ok(RemoteUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The full key of `rel` (a key relative to the prefix).
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// The key relative to the prefix, for a full key under it.
    pub fn strip<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// S3's rules for general-purpose bucket names, which S3-compatible stores
/// (Garage, MinIO, Ceph) share.
fn check_bucket(b: &str) -> Result<(), &'static str> {
    if b.is_empty() {
        return Err("it is empty");
    }
    if !(3..=63).contains(&b.len()) {
        return Err("it must be 3 to 63 characters long");
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return Err("it may only hold lowercase letters, digits, dots and hyphens");
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b.as_bytes()[0]) || !alnum(b.as_bytes()[b.len() - 1]) {
        return Err("it must start and end with a letter or digit");
    }
    if b.contains("..") {
        return Err("it has two dots in a row");
    }
    if b.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it looks like an IP address");
    }
    Ok(())
}

fn check_prefix(p: &str) -> Result<(), &'static str> {
    if p.len() > MAX_PREFIX_LEN {
        return Err("it is longer than 512 bytes");
    }
    if p.is_empty() {
        return Ok(());
    }
    for seg in p.split('/') {
        if seg.is_empty() {
            return Err("it has an empty segment (`//` or a leading `/`)");
        }
        if seg == "." || seg == ".." {
            return Err("it has a `.` or `..` segment");
        }
        if !seg
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'~'))
        {
            return Err("it holds a character outside letters, digits and . _ - ~");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let u = RemoteUrl::parse("s3://go-cache/ci/linux-amd64/").unwrap();
        assert_eq!(u.bucket, "go-cache");
        assert_eq!(u.prefix, "ci/linux-amd64");
        assert_eq!(u.to_string(), "s3://go-cache/ci/linux-amd64");
        assert_eq!(u.key("o/ab"), "ci/linux-amd64/o/ab");
        assert_eq!(u.strip("ci/linux-amd64/o/ab"), Some("o/ab"));
        assert_eq!(u.strip("ci/linux-amd64x/o/ab"), None);

        let bare = RemoteUrl::parse("S3://go.cache.1").unwrap();
        assert_eq!(
            (bare.bucket.as_str(), bare.prefix.as_str()),
            ("go.cache.1", "")
        );
        assert_eq!(bare.key("a/cd"), "a/cd");
        assert_eq!(bare.strip("a/cd"), Some("a/cd"));
        assert_eq!(RemoteUrl::parse("s3://abc/").unwrap().prefix, "");
    }

    #[test]
    fn refuses_bad_urls_saying_why() {
        let cases: &[(&str, &str)] = &[
            ("go-cache", "not a remote URL"),
            ("gs://bucket/x", "`gs://` remotes are not supported"),
            ("s3://", "it is empty"),
            ("s3://ab", "3 to 63"),
            ("s3://Go-Cache", "lowercase"),
            ("s3://go_cache", "lowercase"),
            ("s3://-cache", "start and end"),
            ("s3://a..b", "two dots"),
            ("s3://192.168.1.1", "IP address"),
            ("s3://bucket//x", "empty segment"),
            ("s3://bucket/a//b", "empty segment"),
            ("s3://bucket/a/../b", "`..`"),
            ("s3://bucket/a b", "outside letters"),
            ("s3://bucket/x?versionId=1", "no user, query or fragment"),
            ("s3://key:secret@bucket/x", "no user, query or fragment"),
        ];
        for (url, want) in cases {
            let err = RemoteUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
        let long = format!("s3://bucket/{}", "a".repeat(MAX_PREFIX_LEN + 1));
        assert!(RemoteUrl::parse(&long).is_err());
    }
}
