//! What can go wrong in a CLI command, and the exit code each failure maps to.

use std::fmt;

/// Exit code: the command did what it was asked.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit code: the coordinator answered with an error.
pub(crate) const EXIT_SERVER: i32 = 1;
/// Exit code: bad usage or a local problem (unreadable file, bad JSON, bad timestamp).
pub(crate) const EXIT_USAGE: i32 = 2;
/// Exit code: the coordinator could not be reached.
pub(crate) const EXIT_CONNECT: i32 = 3;
/// Exit code: a ledger export did not verify (truncated stream, count or digest mismatch).
pub(crate) const EXIT_VERIFY: i32 = 4;
/// Exit code: interrupted by Ctrl-C (128 + SIGINT, as shells report it).
pub(crate) const EXIT_INTERRUPTED: i32 = 130;

/// A failed command. `Display` is the one-line message printed after `error: `.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Bad arguments or a local problem.
    Usage(String),
    /// The coordinator answered with the error envelope.
    Api {
        /// HTTP status.
        status: u16,
        /// The envelope's `code`, verbatim (a newer server may send codes we do not know).
        code: String,
        /// The envelope's `message`.
        message: String,
        /// The envelope's `request_id`.
        request_id: String,
        /// The envelope's `details`, when it has any.
        details: Option<serde_json::Value>,
    },
    /// The coordinator (or something in front of it) answered an error without the envelope.
    Http {
        /// HTTP status.
        status: u16,
        /// The URL requested.
        url: String,
        /// The start of the body, for a human to read.
        body: String,
    },
    /// The coordinator answered, but not with what the API promises.
    Protocol(String),
    /// No connection, or the connection broke.
    Connect {
        /// The URL tried.
        url: String,
        /// Why, with the whole source chain.
        cause: String,
    },
    /// A ledger export failed verification.
    Verify(String),
    /// The ledger archive (`ledger verify`) failed verification.
    ArchiveVerify(String),
    /// Ctrl-C.
    Interrupted,
    /// Stdout was closed by its reader (`leasehold jobs list | head`): stop quietly.
    BrokenPipe,
}

impl CliError {
    /// The process exit code for this failure.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Api { .. } | Self::Http { .. } | Self::Protocol(_) => EXIT_SERVER,
            Self::Connect { .. } => EXIT_CONNECT,
            Self::Verify(_) | Self::ArchiveVerify(_) => EXIT_VERIFY,
            Self::Interrupted => EXIT_INTERRUPTED,
            Self::BrokenPipe => EXIT_OK,
        }
    }

    /// A further line for a human: the details of a validation error (which field, which
    /// keys); other codes' details only repeat the message.
    pub(crate) fn details(&self) -> Option<String> {
        match self {
            Self::Api {
                code,
                details: Some(d),
                ..
            } if code == "validation_failed" => Some(d.to_string()),
            _ => None,
        }
    }

    /// A usage error.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// The error for a failure to write to stdout.
    pub(crate) fn output(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::Usage(format!("cannot write to stdout: {err}"))
        }
    }

    /// A connection failure from reqwest: the URL tried and the cause, taken from the error's
    /// sources (reqwest's own top line repeats the URL with its query).
    pub(crate) fn connect(url: &str, err: &reqwest::Error) -> Self {
        let cause = if err.is_timeout() {
            "timed out".to_owned()
        } else {
            match std::error::Error::source(err) {
                Some(source) => error_chain(source),
                None => err.to_string(),
            }
        };
        Self::Connect {
            url: url.to_owned(),
            cause,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::Protocol(m) => f.write_str(m),
            Self::Api {
                code,
                message,
                request_id,
                ..
            } => {
                if request_id.is_empty() {
                    write!(f, "{code}: {message}")
                } else {
                    write!(f, "{code}: {message} (request {request_id})")
                }
            }
            Self::Http { status, url, body } => {
                if body.is_empty() {
                    write!(f, "HTTP {status} from {url}")
                } else {
                    write!(f, "HTTP {status} from {url}: {body}")
                }
            }
            Self::Connect { url, cause } => write!(f, "cannot connect to {url}: {cause}"),
            Self::Verify(m) => write!(f, "ledger export did not verify: {m}"),
            Self::ArchiveVerify(m) => write!(f, "ledger archive did not verify: {m}"),
            Self::Interrupted => f.write_str("interrupted"),
            Self::BrokenPipe => f.write_str("stdout closed"),
        }
    }
}

/// `err: source: source…`, skipping sources whose text the previous one already contains
/// (reqwest and hyper repeat themselves).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Result of a CLI command.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;
