//! Email settings.

use std::path::PathBuf;

/// Where and how the worker sends email.
#[derive(Debug, Clone, clap::Args)]
pub struct EmailConfig {
    /// The mail server, e.g. `smtp://127.0.0.1:2525` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtps://user:pass@host:465` (TLS), as lettre reads it. Unset: messages
    /// are written to `EMAIL_OUTBOX_DIR` instead (the offline default).
    #[arg(long = "smtp-url", env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// The sender of every message.
    #[arg(
        long = "email-from",
        env = "EMAIL_FROM",
        default_value = "Coinpulse <no-reply@coinpulse.localhost>"
    )]
    pub from: String,

    /// Where messages go as `.eml` files when `SMTP_URL` is unset.
    #[arg(
        long = "email-outbox-dir",
        env = "EMAIL_OUTBOX_DIR",
        default_value = "outbox"
    )]
    pub outbox_dir: PathBuf,

    /// The base URL of links in messages (verification, password reset, alerts).
    #[arg(
        long = "app-url",
        env = "APP_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub app_url: String,
}
