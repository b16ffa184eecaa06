//! The queue's whole test suite (`tests/queue.rs`) against a real three-node Redis Cluster:
//! `redis-server` in cluster mode, joined with `redis-cli --cluster create`. Every key of one
//! queue shares a hash tag, so each script and the blocking move run on the node that serves
//! the queue's slot; different queues spread over the nodes.

#[path = "queue.rs"]
mod suite;

mod backend {
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use queue::{QueueConfig, RedisQueue};
    use test_support::free_port;

    /// The cluster's node URLs; started once for the whole suite. Each node is watched by a
    /// shell that stops it (and deletes the cluster's files) when this test process is gone, so
    /// no server outlives the run.
    pub fn nodes() -> Vec<String> {
        static CLUSTER: OnceLock<Vec<String>> = OnceLock::new();
        CLUSTER.get_or_init(start).clone()
    }

    fn start() -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("coinpulse-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        for port in &ports {
            let server = format!(
                "redis-server --port {port} --cluster-enabled yes \
                 --cluster-config-file nodes-{port}.conf --cluster-node-timeout 5000 \
                 --save '' --appendonly no --dir {dir}",
                dir = dir.display()
            );
            let watched = format!(
                "{server} & server=$!; while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
                 kill $server; wait $server; rm -rf {dir}",
                parent = std::process::id(),
                dir = dir.display()
            );
            // Never waited for: the watcher outlives this process on purpose (init reaps it).
            #[allow(clippy::zombie_processes)]
            Command::new("sh")
                .args(["-c", &watched])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
        }
        for port in &ports {
            wait("node up", || {
                std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
            });
        }
        let addresses: Vec<String> = ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &ports {
            wait("cluster state ok", || {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|out| {
                        String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
                    })
            });
        }
        ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    fn wait(what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "redis cluster: {what} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
