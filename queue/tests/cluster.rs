//! The queue's whole test suite (`tests/queue.rs`) against a real three-node Redis Cluster:
//! `redis-server` in cluster mode, joined with `redis-cli --cluster create`. Every key of one
//! queue shares a hash tag, so each script and the blocking move run on the node that serves
//! the queue's slot; different queues spread over the nodes.

#[path = "queue.rs"]
mod suite;

mod backend {
    use queue::{QueueConfig, RedisQueue};

    /// The cluster's node URLs (started once for the whole suite).
    pub fn nodes() -> Vec<String> {
        test_support::redis_cluster()
    }

    /// A queue client on the cluster.
    pub fn connect(config: QueueConfig) -> RedisQueue {
        RedisQueue::cluster(&nodes(), config).expect("valid urls")
    }

    /// A cluster connection for raw commands on one queue's keys (routed by key).
    pub async fn conn() -> redis::cluster_async::ClusterConnection {
        redis::cluster::ClusterClient::new(nodes())
            .expect("valid urls")
            .get_async_connection()
            .await
            .expect("connect to the cluster")
    }
}
