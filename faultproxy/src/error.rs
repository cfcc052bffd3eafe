//! Errors of the proxy registry, with the HTTP statuses Toxiproxy answers them with.

/// Why an operation on proxies or toxics failed.
///
/// The messages are Toxiproxy's, so that clients matching on them keep working.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is not valid JSON for the operation.
    #[error("bad request body: {0}")]
    BadRequestBody(String),
    /// A field the operation needs is absent or empty.
    #[error("missing required field: {0}")]
    MissingField(&'static str),
    /// No proxy has that name.
    #[error("proxy not found")]
    ProxyNotFound,
    /// A proxy with that name exists already.
    #[error("proxy already exists")]
    ProxyAlreadyExists,
    /// The toxic's stream is neither `upstream` nor `downstream`.
    #[error("stream was invalid, can be either upstream or downstream")]
    InvalidStream,
    /// The toxic type is not one this server implements.
    #[error("invalid toxic type")]
    InvalidToxicType,
    /// A toxic with that name exists already on the proxy.
    #[error("toxic already exists")]
    ToxicAlreadyExists,
    /// The proxy has no toxic with that name.
    #[error("toxic not found")]
    ToxicNotFound,
    /// The proxy could not listen on its address (in use, not local, unresolvable).
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address as the proxy was given it.
        addr: String,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl Error {
    /// The HTTP status Toxiproxy answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequestBody(_)
            | Error::MissingField(_)
            | Error::InvalidStream
            | Error::InvalidToxicType => 400,
            Error::ProxyNotFound | Error::ToxicNotFound => 404,
            Error::ProxyAlreadyExists | Error::ToxicAlreadyExists => 409,
            // Toxiproxy has no status for a failed listen and falls back to 500.
            Error::Listen { .. } => 500,
        }
    }
}
