//! From a raw error to an [`ErrorClass`]: a policy's own rules first (in
//! order, first match wins), then the built-in table — errno names, then the
//! HTTP status, then the exception type, then words in the message. What
//! nothing matches is `unknown`.

use warden_core::records::ErrorClass;
use warden_policy::recovery::ClassifyRule;

/// A failure as a service saw it, before classification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawError {
    /// An errno name, such as `ECONNREFUSED`.
    pub errno: Option<String>,
    /// An HTTP status.
    pub http_status: Option<u16>,
    /// The exception or error type, such as `requests.Timeout`.
    pub exception: Option<String>,
    /// The message.
    pub message: Option<String>,
}

impl RawError {
    /// Returns true if and only if nothing is known about the error.
    pub fn is_empty(&self) -> bool {
        self.errno.is_none()
            && self.http_status.is_none()
            && self.exception.is_none()
            && self.message.is_none()
    }
}

impl From<&std::io::Error> for RawError {
    fn from(e: &std::io::Error) -> Self {
        RawError {
            errno: e.raw_os_error().and_then(errno_name).map(str::to_owned),
            exception: None,
            http_status: None,
            message: Some(e.to_string()),
        }
    }
}

/// A policy's rules, compiled.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<Compiled>);

#[derive(Debug, Clone)]
struct Compiled {
    rule: ClassifyRule,
    exception: Option<globset::GlobMatcher>,
    message: Option<globset::GlobMatcher>,
}

fn glob(g: &Option<String>, case_insensitive: bool) -> Option<globset::GlobMatcher> {
    let g = g.as_ref()?;
    // Checked by `warden check`; a glob that fails here matches nothing.
    globset::GlobBuilder::new(g)
        .case_insensitive(case_insensitive)
        .literal_separator(false)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

impl Rules {
    /// Compiles a policy's rules.
    pub fn new(rules: &[ClassifyRule]) -> Rules {
        Rules(
            rules
                .iter()
                .map(|r| Compiled {
                    rule: r.clone(),
                    exception: glob(&r.exception, false),
                    message: glob(&r.message, true),
                })
                .collect(),
        )
    }

    /// Returns the class of `e` and what decided it (`rule 2`,
    /// `errno ETIMEDOUT`, `http_status 503`, …).
    pub fn classify(&self, e: &RawError) -> (ErrorClass, String) {
        for (i, c) in self.0.iter().enumerate() {
            if c.matches(e) {
                return (c.rule.class, format!("policy rule {i}"));
            }
        }
        builtin(e)
    }
}

impl Compiled {
    fn matches(&self, e: &RawError) -> bool {
        let r = &self.rule;
        let errno = r
            .errno
            .as_ref()
            .is_none_or(|want| e.errno.as_ref() == Some(want));
        let status = r.http_status.is_none_or(|want| e.http_status == Some(want));
        let exception = self
            .exception
            .as_ref()
            .is_none_or(|g| e.exception.as_ref().is_some_and(|x| g.is_match(x)));
        let message = self
            .message
            .as_ref()
            .is_none_or(|g| e.message.as_ref().is_some_and(|x| g.is_match(x)));
        errno && status && exception && message
    }
}

/// The built-in table.
pub fn builtin(e: &RawError) -> (ErrorClass, String) {
    use ErrorClass as C;
    if let Some(name) = &e.errno
        && let Some(c) = by_errno(name)
    {
        return (c, format!("errno {name}"));
    }
    if let Some(s) = e.http_status
        && let Some(c) = by_status(s)
    {
        return (c, format!("http_status {s}"));
    }
    if let Some(x) = &e.exception
        && let Some(c) = by_words(x, EXCEPTION_WORDS)
    {
        return (c, format!("exception {x}"));
    }
    if let Some(m) = &e.message
        && let Some(c) = by_words(m, MESSAGE_WORDS)
    {
        return (c, "message".into());
    }
    (C::Unknown, "no rule matched".into())
}

fn by_errno(name: &str) -> Option<ErrorClass> {
    use ErrorClass as C;
    Some(match name {
        "ETIMEDOUT" | "ETIME" => C::Timeout,
        "ECONNREFUSED" | "ECONNRESET" | "ECONNABORTED" | "EPIPE" | "ENOTCONN" | "EHOSTUNREACH"
        | "ENETUNREACH" | "ENETDOWN" | "EHOSTDOWN" | "ENETRESET" => C::Connection,
        "EACCES" | "EPERM" | "EROFS" => C::Permission,
        "ENOSPC" | "EMFILE" | "ENFILE" | "ENOMEM" | "EDQUOT" | "ENOBUFS" | "EAGAIN"
        | "EWOULDBLOCK" => C::ResourceExhausted,
        "EBUSY" => C::DependencyUnavailable,
        "EINVAL" | "E2BIG" | "EBADF" | "ENOENT" | "EEXIST" | "ENOTDIR" | "EISDIR"
        | "ENAMETOOLONG" | "ERANGE" | "EDOM" => C::InvalidInput,
        "EIO" | "EFAULT" => C::Internal,
        _ => return None,
    })
}

fn by_status(s: u16) -> Option<ErrorClass> {
    use ErrorClass as C;
    Some(match s {
        429 => C::RateLimited,
        502 | 503 => C::DependencyUnavailable,
        504 | 408 => C::Timeout,
        401 | 407 => C::Authentication,
        403 => C::Permission,
        507 => C::ResourceExhausted,
        500 | 501 | 505..=599 => C::Internal,
        400..=499 => C::InvalidInput,
        _ => return None,
    })
}

/// Words looked for in exception types (case-insensitive), first match wins.
const EXCEPTION_WORDS: &[(&str, ErrorClass)] = &[
    ("timeout", ErrorClass::Timeout),
    ("timedout", ErrorClass::Timeout),
    ("ratelimit", ErrorClass::RateLimited),
    ("toomanyrequests", ErrorClass::RateLimited),
    ("throttl", ErrorClass::RateLimited),
    ("connection", ErrorClass::Connection),
    ("connect", ErrorClass::Connection),
    ("unauthorized", ErrorClass::Authentication),
    ("authentication", ErrorClass::Authentication),
    ("permission", ErrorClass::Permission),
    ("accessdenied", ErrorClass::Permission),
    ("forbidden", ErrorClass::Permission),
    ("outofmemory", ErrorClass::ResourceExhausted),
    ("memoryerror", ErrorClass::ResourceExhausted),
    ("sql", ErrorClass::Database),
    ("database", ErrorClass::Database),
    ("deadlock", ErrorClass::Database),
    ("unavailable", ErrorClass::DependencyUnavailable),
    ("valueerror", ErrorClass::InvalidInput),
    ("illegalargument", ErrorClass::InvalidInput),
    ("invalidargument", ErrorClass::InvalidInput),
    ("validation", ErrorClass::InvalidInput),
];

/// Phrases looked for in messages (case-insensitive), first match wins.
const MESSAGE_WORDS: &[(&str, ErrorClass)] = &[
    ("timed out", ErrorClass::Timeout),
    ("timeout", ErrorClass::Timeout),
    ("too many requests", ErrorClass::RateLimited),
    ("rate limit", ErrorClass::RateLimited),
    ("connection refused", ErrorClass::Connection),
    ("connection reset", ErrorClass::Connection),
    ("broken pipe", ErrorClass::Connection),
    ("no space left", ErrorClass::ResourceExhausted),
    ("out of memory", ErrorClass::ResourceExhausted),
    ("too many open files", ErrorClass::ResourceExhausted),
    ("quota exceeded", ErrorClass::ResourceExhausted),
    ("permission denied", ErrorClass::Permission),
    ("unauthorized", ErrorClass::Authentication),
    ("deadlock", ErrorClass::Database),
    ("service unavailable", ErrorClass::DependencyUnavailable),
];

fn by_words(text: &str, words: &[(&str, ErrorClass)]) -> Option<ErrorClass> {
    // Only the start of a long message is looked at: reports are capped, but
    // a rule table should not scan kilobytes per failure.
    let head: String = text
        .chars()
        .take(512)
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    words
        .iter()
        .find(|(w, _)| head.contains(w))
        .map(|(_, c)| *c)
}

/// Returns the name of errno `code` on Linux, for the errors the table knows.
pub fn errno_name(code: i32) -> Option<&'static str> {
    Some(match code {
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EPIPE => "EPIPE",
        libc::ENOTCONN => "ENOTCONN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENETDOWN => "ENETDOWN",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EROFS => "EROFS",
        libc::ENOSPC => "ENOSPC",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOMEM => "ENOMEM",
        libc::EDQUOT => "EDQUOT",
        libc::ENOBUFS => "ENOBUFS",
        libc::EAGAIN => "EAGAIN",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::EIO => "EIO",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass as C;

    fn raw(
        errno: Option<&str>,
        status: Option<u16>,
        exc: Option<&str>,
        msg: Option<&str>,
    ) -> RawError {
        RawError {
            errno: errno.map(Into::into),
            http_status: status,
            exception: exc.map(Into::into),
            message: msg.map(Into::into),
        }
    }

    #[test]
    fn the_built_in_table_follows_the_issue() {
        let by_status = |s| builtin(&raw(None, Some(s), None, None)).0;
        let by_errno = |e| builtin(&raw(Some(e), None, None, None)).0;
        assert_eq!(by_status(429), C::RateLimited);
        assert_eq!(by_status(502), C::DependencyUnavailable);
        assert_eq!(by_status(503), C::DependencyUnavailable);
        assert_eq!(by_status(504), C::Timeout);
        assert_eq!(by_status(401), C::Authentication);
        assert_eq!(by_status(403), C::Permission);
        assert_eq!(by_status(422), C::InvalidInput);
        assert_eq!(by_status(500), C::Internal);
        assert_eq!(by_errno("ETIMEDOUT"), C::Timeout);
        assert_eq!(by_errno("ECONNREFUSED"), C::Connection);
        assert_eq!(by_errno("ECONNRESET"), C::Connection);
        for e in ["ENOSPC", "EMFILE", "ENOMEM"] {
            assert_eq!(by_errno(e), C::ResourceExhausted, "{e}");
        }
        assert_eq!(
            builtin(&raw(
                None,
                None,
                Some("requests.exceptions.ConnectTimeout"),
                None
            ))
            .0,
            C::Timeout
        );
        assert_eq!(
            builtin(&raw(None, None, None, Some("ERROR: deadlock detected"))).0,
            C::Database
        );
        assert_eq!(builtin(&raw(None, None, None, Some("odd"))).0, C::Unknown);
        // errno wins over the status.
        assert_eq!(
            builtin(&raw(Some("ENOSPC"), Some(503), None, None)),
            (C::ResourceExhausted, "errno ENOSPC".into())
        );
    }

    #[test]
    fn policy_rules_come_first_and_all_their_matchers_must_match() {
        let rules: Vec<ClassifyRule> = serde_json::from_str(
            r#"[{"http_status": 503, "message": "*maintenance*", "class": "invalid-input"},
                {"exception": "*.DeadlockException", "class": "database"},
                {"errno": "EAGAIN", "class": "rate-limited"}]"#,
        )
        .unwrap();
        let r = Rules::new(&rules);
        assert_eq!(
            r.classify(&raw(None, Some(503), None, Some("Down for MAINTENANCE"))),
            (C::InvalidInput, "policy rule 0".into())
        );
        assert_eq!(
            r.classify(&raw(None, Some(503), None, Some("overloaded")))
                .0,
            C::DependencyUnavailable,
            "rule 0 needs both"
        );
        assert_eq!(
            r.classify(&raw(None, None, Some("org.db.DeadlockException"), None))
                .0,
            C::Database
        );
        assert_eq!(
            r.classify(&raw(Some("EAGAIN"), None, None, None)).0,
            C::RateLimited
        );
    }

    #[test]
    fn io_errors_carry_their_errno_name() {
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(builtin(&RawError::from(&e)).0, C::Connection);
    }
}
