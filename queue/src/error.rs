//! The queue's error type.

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis refused, timed out, or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A Redis reply had an unexpected shape.
    #[error("unexpected reply from redis: {0}")]
    Reply(#[from] redis::ParsingError),
    /// Arguments could not be encoded or decoded.
    #[error("job arguments: {0}")]
    Codec(#[from] serde_json::Error),
    /// Redis stayed unreachable longer than the queue's `redis_grace`.
    #[error("redis unreachable for more than {seconds} s: {last}")]
    Unreachable {
        /// The grace period that ran out.
        seconds: u64,
        /// The last error seen.
        last: String,
    },
}
