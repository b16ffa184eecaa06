//! The one JWT algorithm this API uses, HS256, as jsonwebtoken's crypto backend.
//!
//! jsonwebtoken's bundled `rust_crypto` backend links RSA, ECDSA and EdDSA besides HMAC; the
//! `rsa` crate among them carries an unfixed timing advisory (RUSTSEC-2023-0071). Installing this
//! backend instead keeps every asymmetric algorithm out of the build: a token naming any
//! algorithm but HS256 cannot even be checked, on top of `Validation` accepting only HS256.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::Sha256;
use signature::{Signer, Verifier};

type HmacSha256 = Hmac<Sha256>;

/// HS256 with a key, for signing and verifying.
struct Hs256(HmacSha256);

impl Hs256 {
    fn new(algorithm: &Algorithm, family: AlgorithmFamily, secret: &[u8]) -> Result<Self, Error> {
        if *algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        if family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        HmacSha256::new_from_slice(secret)
            .map(Self)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        // `verify_slice` compares in constant time.
        mac.verify_slice(signature)
            .map_err(signature::Error::from_source)
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

static HS256_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: |algorithm, key: &EncodingKey| {
        Ok(Box::new(Hs256::new(
            algorithm,
            key.family(),
            key.as_bytes(),
        )?))
    },
    verifier_factory: |algorithm, key: &DecodingKey| {
        Ok(Box::new(Hs256::new(
            algorithm,
            key.family(),
            key.try_get_as_bytes()?,
        )?))
    },
    // No JWK support: the API never reads or publishes key sets.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes HS256 jsonwebtoken's backend for this process; later calls do nothing.
pub fn install() {
    // Fails only when a backend is installed already, which is then this one.
    let _ = HS256_ONLY.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_hs256_and_nothing_else() {
        install();
        let key = EncodingKey::from_secret(b"a-secret-of-enough-length-for-tests");
        let signature =
            jsonwebtoken::crypto::sign(b"message", &key, Algorithm::HS256).expect("HS256 signs");
        let decoding = DecodingKey::from_secret(b"a-secret-of-enough-length-for-tests");
        assert!(
            jsonwebtoken::crypto::verify(&signature, b"message", &decoding, Algorithm::HS256)
                .expect("HS256 verifies")
        );
        assert!(
            !jsonwebtoken::crypto::verify(&signature, b"messagE", &decoding, Algorithm::HS256)
                .expect("HS256 verifies")
        );
        for other in [Algorithm::HS512, Algorithm::RS256, Algorithm::ES256] {
            assert!(jsonwebtoken::crypto::sign(b"message", &key, other).is_err());
        }
    }
}
