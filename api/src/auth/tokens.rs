//! Access tokens (JWT, HS256) and opaque refresh tokens.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use common::domain::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moka::sync::Cache;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::AuthConfig;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// The user's role when the token was issued.
    pub role: Role,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not valid before (Unix seconds).
    pub nbf: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Unique token id.
    pub jti: Uuid,
}

/// Why a bearer token was refused. Kept coarse on purpose: callers learn only "invalid".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past `exp`.
    #[error("the access token has expired")]
    Expired,
    /// Anything else: bad signature, wrong algorithm, audience or issuer, malformed.
    #[error("the access token is invalid")]
    Invalid,
}

/// Signs and verifies access tokens with the configured key. Only HS256 is accepted, so
/// `alg: none` and algorithm-confusion tokens fail verification.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    verified: Cache<Box<str>, Arc<Claims>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// How much clock skew between API processes is tolerated on `exp`/`nbf`.
const LEEWAY_SECS: u64 = 5;
/// Verified tokens remembered per process (each entry is the token plus its claims, < 1 KiB).
const VERIFIED_CACHE_ENTRIES: u64 = 50_000;
/// How long a verified token is remembered before it is checked in full again.
const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(60);

impl TokenKeys {
    /// Builds the keys and validation rules from configuration.
    pub fn new(config: &AuthConfig) -> Self {
        super::hmac_only::install();
        let secret = config.signing_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            access_ttl: config.access_ttl,
            verified: Cache::builder()
                .max_capacity(VERIFIED_CACHE_ENTRIES)
                .time_to_live(VERIFIED_CACHE_TTL)
                .build(),
        }
    }

    /// Lifetime of the access tokens this issues.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Signs a new access token for `user_id` with `role`.
    pub fn issue(&self, user_id: Uuid, role: Role) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: user_id,
            role,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::now_v7(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature, algorithm, `exp`, `nbf`, `iss` and `aud`.
    ///
    /// A token verified before is answered from memory after re-checking only its time
    /// claims: a token's bytes cannot change, so neither can its signature check. Only tokens
    /// that passed full verification are remembered.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            let now = Utc::now().timestamp();
            let leeway = LEEWAY_SECS as i64;
            return if claims.exp < now - leeway {
                Err(TokenError::Expired)
            } else if claims.nbf > now + leeway {
                Err(TokenError::Invalid)
            } else {
                Ok(claims)
            };
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| Arc::new(data.claims))
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        self.verified.insert(token.into(), claims.clone());
        Ok(claims)
    }
}

/// A new opaque refresh token: what the client gets and what the database keeps.
#[derive(Debug)]
pub struct NewRefreshToken {
    /// Sent to the client once; never stored.
    pub token: String,
    /// SHA-256 of the token, stored and looked up.
    pub hash: Vec<u8>,
}

/// Makes a refresh token from 256 random bits.
pub fn new_refresh_token() -> NewRefreshToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    NewRefreshToken { token, hash }
}

/// SHA-256 of `text` in lower-case hex: a fixed-size Redis key part that reveals nothing of
/// the text (an email address, a ticket).
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The stored form of a refresh token. A fast hash is right here: the token has 256 bits of
/// entropy, so it cannot be brute-forced from a leaked digest.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config() -> AuthConfig {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            auth: AuthConfig,
        }
        let mut cli = Cli::parse_from(["test"]);
        cli.auth.jwt_secret = Some("unit-test-secret-unit-test-secret-0123".into());
        cli.auth.jwt_issuer = "coinpulse".into();
        cli.auth.jwt_audience = "coinpulse-api".into();
        cli.auth.access_ttl = Duration::from_secs(60);
        cli.auth
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = TokenKeys::new(&config());
        let user = Uuid::now_v7();
        let token = keys.issue(user, Role::Admin).expect("signs");
        let claims = keys.verify(&token).expect("verifies");
        assert_eq!(claims.sub, user);
        assert_eq!(claims.role, Role::Admin);
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        let keys = TokenKeys::new(&config());
        let now = Utc::now().timestamp();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::json!({
                "sub": Uuid::now_v7(), "role": "admin", "iat": now, "nbf": now, "exp": now + 60,
                "iss": "coinpulse", "aud": "coinpulse-api", "jti": Uuid::now_v7()
            })
            .to_string(),
        );
        assert_eq!(
            keys.verify(&format!("{header}.{payload}.")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn another_key_or_audience_is_refused() {
        let keys = TokenKeys::new(&config());
        let mut other = config();
        other.jwt_secret = Some("a-different-secret-a-different-secret".into());
        let forged = TokenKeys::new(&other)
            .issue(Uuid::now_v7(), Role::User)
            .expect("signs");
        assert_eq!(keys.verify(&forged), Err(TokenError::Invalid));

        let mut other = config();
        other.jwt_audience = "someone-else".into();
        let foreign = TokenKeys::new(&other)
            .issue(Uuid::now_v7(), Role::User)
            .expect("signs");
        assert_eq!(keys.verify(&foreign), Err(TokenError::Invalid));
    }

    #[test]
    fn verified_tokens_are_remembered_but_their_time_claims_rechecked() {
        let keys = TokenKeys::new(&config());
        let token = keys.issue(Uuid::now_v7(), Role::User).expect("signs");
        let first = keys.verify(&token).expect("verifies");
        let second = keys.verify(&token).expect("verifies again");
        assert!(
            Arc::ptr_eq(&first, &second),
            "second answer comes from the cache"
        );

        let now = Utc::now().timestamp();
        let stale = Claims {
            exp: now - 60,
            ..(*first).clone()
        };
        keys.verified.insert("stale".into(), Arc::new(stale));
        assert_eq!(keys.verify("stale"), Err(TokenError::Expired));
        let early = Claims {
            nbf: now + 600,
            ..(*first).clone()
        };
        keys.verified.insert("early".into(), Arc::new(early));
        assert_eq!(keys.verify("early"), Err(TokenError::Invalid));
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a.token, b.token);
        assert_eq!(a.hash, hash_refresh_token(&a.token));
        assert_eq!(a.token.len(), 43);
    }
}
