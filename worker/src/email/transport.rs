//! Where messages go: an SMTP server (lettre, pooled, TLS as `SMTP_URL` says), or `.eml`
//! files in the outbox directory when no server is configured.

use std::path::PathBuf;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// The configured transport.
#[derive(Debug, Clone)]
pub enum Transport {
    /// An SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// A directory of `.eml` files.
    Outbox(PathBuf),
}

/// Why a message was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the server is unreachable, busy or answered 4xx.
    #[error("{0}")]
    Transient(String),
    /// The server refused the message for good (5xx).
    #[error("{0}")]
    Permanent(String),
}

impl Transport {
    /// SMTP when `smtp_url` is set, else the outbox directory.
    pub fn new(
        smtp_url: Option<&str>,
        outbox: PathBuf,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        match smtp_url {
            Some(url) => Ok(Self::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build(),
            )),
            None => Ok(Self::Outbox(outbox)),
        }
    }

    /// The name stored in `email_deliveries.transport`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Smtp(_) => "smtp",
            Self::Outbox(_) => "outbox",
        }
    }

    /// Hands `message` over; `file_stem` names the outbox file.
    #[tracing::instrument(name = "email_send", skip_all, fields(transport = self.name()))]
    pub async fn send(&self, message: &Message, file_stem: &str) -> Result<(), SendError> {
        match self {
            Self::Smtp(smtp) => match smtp.send(message.clone()).await {
                Ok(_) => Ok(()),
                Err(err) if err.is_permanent() => Err(SendError::Permanent(err.to_string())),
                Err(err) => Err(SendError::Transient(err.to_string())),
            },
            Self::Outbox(dir) => {
                let path = dir.join(format!("{file_stem}.eml"));
                write_atomically(dir, &path, &message.formatted())
                    .await
                    .map_err(|err| {
                        SendError::Transient(format!("writing {}: {err}", path.display()))
                    })?;
                tracing::info!(path = %path.display(), "email written to the outbox");
                Ok(())
            }
        }
    }
}

/// Writes through a temporary file and a rename, so the outbox never holds half a message.
async fn write_atomically(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let partial = path.with_extension("eml.partial");
    tokio::fs::write(&partial, bytes).await?;
    tokio::fs::rename(&partial, path).await
}
