//! Argon2id password hashing, off the async runtime and with bounded concurrency.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use crate::config::AuthConfig;

/// Hashes and verifies passwords.
///
/// Each hash costs tens of milliseconds of CPU and ~19 MiB of memory, so work runs on the
/// blocking pool and at most `concurrency` hashes run at once: a login flood queues here
/// instead of starving the runtime that serves every other request.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified when the account does not exist so that login
    /// takes the same time whether or not the email is registered. Made on first use rather
    /// than at start-up: hashing touches 19 MiB that the allocator would otherwise keep in an
    /// idle process.
    decoy_hash: Arc<OnceCell<String>>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The password is wrong.
    Mismatch,
    /// The password is right and the hash uses current parameters.
    Match,
    /// The password is right but the hash uses old parameters: store this new hash.
    MatchRehashed(String),
}

impl PasswordHasher {
    /// Builds a hasher with Argon2id and the configured cost.
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let params = Params::new(
            config.password_memory_kib,
            config.password_iterations,
            1,
            None,
        )
        .map_err(|err| anyhow::anyhow!("invalid Argon2 parameters: {err}"))?;
        let concurrency = config.password_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            decoy_hash: Arc::default(),
        })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let params = self.params.clone();
        let password = password.to_owned();
        self.run(move || hash_with(&params, &password)).await?
    }

    /// Checks `password` against `stored`, or against the decoy when there is no account.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> anyhow::Result<Verification> {
        let exists = stored.is_some();
        let stored = match stored {
            Some(stored) => stored.to_owned(),
            None => self
                .decoy_hash
                .get_or_try_init(|| async { self.hash(&uuid::Uuid::new_v4().to_string()).await })
                .await?
                .clone(),
        };
        let params = self.params.clone();
        let password = password.to_owned();
        let verification = self
            .run(move || -> anyhow::Result<Verification> {
                let parsed = PasswordHash::new(&stored)
                    .map_err(|err| anyhow::anyhow!("stored password hash is unreadable: {err}"))?;
                if argon2(&params)
                    .verify_password(password.as_bytes(), &parsed)
                    .is_err()
                {
                    return Ok(Verification::Mismatch);
                }
                let current = Params::try_from(&parsed).ok().is_some_and(|old| {
                    old.m_cost() == params.m_cost()
                        && old.t_cost() == params.t_cost()
                        && old.p_cost() == params.p_cost()
                }) && parsed.algorithm == argon2::ARGON2ID_IDENT;
                if current {
                    Ok(Verification::Match)
                } else {
                    Ok(Verification::MatchRehashed(hash_with(&params, &password)?))
                }
            })
            .await??;
        // The decoy never matches a real login, whatever the caller typed.
        Ok(if exists {
            verification
        } else {
            Verification::Mismatch
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        Ok(tokio::task::spawn_blocking(work).await?)
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("hashing the password failed: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn hasher(memory_kib: u32) -> PasswordHasher {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            auth: AuthConfig,
        }
        let mut auth = Cli::parse_from(["test"]).auth;
        auth.password_memory_kib = memory_kib;
        auth.password_iterations = 1;
        auth.password_concurrency = Some(2);
        PasswordHasher::new(&auth).expect("valid parameters")
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = hasher(1024);
        let hash = hasher.hash("correct horse").await.expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            hasher
                .verify("correct horse", Some(&hash))
                .await
                .expect("runs"),
            Verification::Match
        );
        assert_eq!(
            hasher.verify("wrong", Some(&hash)).await.expect("runs"),
            Verification::Mismatch
        );
        assert_eq!(
            hasher.verify("correct horse", None).await.expect("runs"),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn outdated_hashes_are_upgraded_on_match() {
        let old = hasher(1024).hash("pw-pw-pw-pw").await.expect("hashes");
        let verification = hasher(2048)
            .verify("pw-pw-pw-pw", Some(&old))
            .await
            .expect("runs");
        let Verification::MatchRehashed(new) = verification else {
            panic!("expected a rehash, got {verification:?}");
        };
        assert!(new.contains("m=2048"));
    }
}
