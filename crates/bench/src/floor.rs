//! The floor: a bare tonic unary RPC between processes on loopback, the physical limit of a job
//! start here. The server is this binary run again with the hidden `__floor-server` argument: a
//! tonic server set up as the agent's (one multi-thread runtime, a `TcpListenerStream`) serving only
//! `grpc.health.v1.Health/Check`, which does no work. The client keeps one channel per server with
//! the coordinator's endpoint settings, and measures calls one at a time (one server) and 64 in
//! flight over 4 servers (16 each); each figure is the median of several windows.

use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::cluster::Process;

/// The hidden argument that makes this binary a floor server.
pub const SERVER_ARG: &str = "__floor-server";

/// Servers, and calls in flight on each, for the concurrent figure.
pub const SERVERS: usize = 4;
pub const IN_FLIGHT_PER_SERVER: usize = 16;

/// How long each measured window lasts.
const WINDOW: Duration = Duration::from_secs(1);

/// The floor's figures (medians over windows).
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub serial_per_s: f64,
    pub serial_p50_us: f64,
    pub serial_p99_us: f64,
    pub parallel_per_s: f64,
}

impl Floor {
    /// The mean latency of one call at a time.
    pub fn serial_mean_us(&self) -> f64 {
        1e6 / self.serial_per_s
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "serial_calls_per_s": self.serial_per_s,
            "serial_mean_us": self.serial_mean_us(),
            "serial_p50_us": self.serial_p50_us,
            "serial_p99_us": self.serial_p99_us,
            "in_flight": SERVERS * IN_FLIGHT_PER_SERVER,
            "parallel_calls_per_s": self.parallel_per_s,
        })
    }
}

/// Serves the floor: prints `listening on ADDR` on stderr and stops when stdin closes.
pub fn serve() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let address = listener.local_addr().expect("the bound address");
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut buffer = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buffer), Ok(n) if n > 0) {}
            let _ = stop_tx.send(());
        });
        eprintln!("floor server listening on {address}");
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                let _ = stop_rx.await;
            })
            .await
            .expect("serve");
    });
    ExitCode::SUCCESS
}

/// Starts the floor's server processes.
pub fn spawn_servers() -> Vec<Process> {
    let exe = std::env::current_exe().expect("the bench binary's path");
    (0..SERVERS)
        .map(|i| {
            let mut command = Command::new(&exe);
            command.arg(SERVER_ARG);
            Process::spawn(command, &format!("floor-{i}"))
        })
        .collect()
}

async fn connect(address: SocketAddr) -> HealthClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("an endpoint")
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_millis(500))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .expect("connect to a floor server");
    HealthClient::new(channel)
}

async fn call(client: &mut HealthClient<Channel>) {
    client.check(HealthCheckRequest { service: String::new() }).await.expect("a health check");
}

/// Measures the floor against running servers: `runs` windows of each kind, after a warm-up.
pub async fn measure(servers: &[SocketAddr], runs: usize) -> Floor {
    let mut clients = Vec::new();
    for address in servers {
        clients.push(connect(*address).await);
    }
    // One call at a time on the first server.
    let mut client = clients[0].clone();
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        call(&mut client).await;
    }
    let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut latencies = Vec::with_capacity(20_000);
        let started = Instant::now();
        while started.elapsed() < WINDOW {
            let at = Instant::now();
            call(&mut client).await;
            latencies.push(at.elapsed().as_secs_f64() * 1e6);
        }
        rates.push(latencies.len() as f64 / started.elapsed().as_secs_f64());
        latencies.sort_by(f64::total_cmp);
        p50s.push(percentile(&latencies, 0.50));
        p99s.push(percentile(&latencies, 0.99));
    }
    // 64 in flight: 16 loops per server, each on the server's one channel.
    let mut parallel = Vec::new();
    for run in 0..=runs {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut loops = Vec::new();
        for client in &clients {
            for _ in 0..IN_FLIGHT_PER_SERVER {
                let (mut client, count, stop) = (client.clone(), count.clone(), stop.clone());
                loops.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        call(&mut client).await;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
        // Counted after the loops are all going; the first window is a warm-up.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (before, started) = (count.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(WINDOW).await;
        let calls = count.load(Ordering::Relaxed) - before;
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for l in loops {
            let _ = l.await;
        }
        if run > 0 {
            parallel.push(calls as f64 / elapsed);
        }
    }
    Floor {
        serial_per_s: crate::median(&mut rates),
        serial_p50_us: crate::median(&mut p50s),
        serial_p99_us: crate::median(&mut p99s),
        parallel_per_s: crate::median(&mut parallel),
    }
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Starts the servers and measures the floor; used by the scenarios that compare with it.
pub fn measure_with_servers(runtime: &tokio::runtime::Runtime, runs: usize) -> Floor {
    let servers = spawn_servers();
    let addresses: Vec<SocketAddr> = servers.iter().map(|s| s.address).collect();
    runtime.block_on(measure(&addresses, runs))
}

/// Prints the floor's figures as a table row set.
pub fn print(floor: &Floor) {
    println!("{:<34} {:>14} {:>12} {:>12} {:>12}", "floor (health Check)", "calls/s", "mean µs", "p50 µs", "p99 µs");
    println!(
        "{:<34} {:>14.0} {:>12.1} {:>12.1} {:>12.1}",
        "1 at a time, 1 server",
        floor.serial_per_s,
        floor.serial_mean_us(),
        floor.serial_p50_us,
        floor.serial_p99_us
    );
    println!(
        "{:<34} {:>14.0} {:>12.1} {:>12} {:>12}",
        format!("{} in flight, {SERVERS} servers", SERVERS * IN_FLIGHT_PER_SERVER),
        floor.parallel_per_s,
        (SERVERS * IN_FLIGHT_PER_SERVER) as f64 * 1e6 / floor.parallel_per_s,
        "-",
        "-"
    );
}

/// Runs the scenario and prints its figures.
pub fn run(runs: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    println!(
        "floor: bare tonic unary RPC (grpc.health.v1 Check) to server processes on loopback, median of {runs} windows of {} s",
        WINDOW.as_secs()
    );
    let floor = measure_with_servers(&runtime, runs);
    print(&floor);
    println!("{}", serde_json::json!({ "floor": floor.to_json() }));
}
