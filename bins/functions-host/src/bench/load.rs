//! The bench's HTTP client: kept-alive HTTP/1.1 connections (hyper), each sending one request
//! at a time, timing every response until its body has been read.

use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Where requests go: a server's address and a path on it, with the body each request sends.
#[derive(Clone, Debug)]
pub struct Target {
    pub address: SocketAddr,
    pub path: String,
    /// Sent with `POST` (as JSON) when there is one; a `GET` otherwise.
    pub body: Option<Bytes>,
}

impl Target {
    /// `url` (`http://HOST:PORT/path`), with `body`.
    pub fn new(url: &str, body: Option<&str>) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url} is not an http:// URL"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let address = std::net::ToSocketAddrs::to_socket_addrs(authority)?
            .next()
            .with_context(|| format!("{authority} has no address"))?;
        Ok(Self {
            address,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            body: body.map(|b| Bytes::from(b.to_owned())),
        })
    }
}

/// One kept-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    target: Target,
}

impl Connection {
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        Ok(Self {
            sender: handshake(target.address).await?,
            target: target.clone(),
        })
    }

    /// Sends one request to the target and reads its answer; how long that took. A status
    /// other than 2xx is an error.
    pub async fn send(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let method = if self.target.body.is_some() {
            "POST"
        } else {
            "GET"
        };
        let (path, body) = (self.target.path.clone(), self.target.body.clone());
        self.request(method, &path, body).await?;
        Ok(started.elapsed())
    }

    /// Sends `method path` with `body` (as JSON) and reads the answer: its status and body; a
    /// status other than 2xx is an error.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.target.address.to_string())
            .header("content-type", "application/json")
            .body(Full::new(body.unwrap_or_default()))?;
        if self.sender.ready().await.is_err() {
            // The server closed it (as servers do after so many requests): a new one.
            self.sender = handshake(self.target.address).await?;
            self.sender.ready().await?;
        }
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{method} {path} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        Ok((status.as_u16(), body))
    }
}

/// A new HTTP/1.1 connection to `address`.
async fn handshake(address: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `count` requests one after another on one connection, `pause` apart; each one's latency.
pub async fn sequential(
    target: &Target,
    count: usize,
    pause: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut connection = Connection::open(target).await?;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        latencies.push(connection.send().await?);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(latencies)
}

/// `connections` connections sending requests back to back for `duration`: every latency, and
/// the time it took (the last requests' ends included).
pub async fn closed_loop(
    target: &Target,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        tasks.spawn(async move {
            let mut connection = Connection::open(&target).await?;
            let mut latencies = Vec::new();
            while Instant::now() < until {
                latencies.push(connection.send().await?);
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok((all, started.elapsed()))
}

/// `count` requests at once, each on a connection of its own: each one's latency, and the time
/// until the last answered.
pub async fn burst(target: &Target, count: usize) -> anyhow::Result<(Vec<Duration>, Duration)> {
    // Connected first: the burst is of requests, not of handshakes.
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        connections.push(Connection::open(target).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut connection in connections {
        tasks.spawn(async move { connection.send().await });
    }
    let mut latencies = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        latencies.push(done??);
    }
    Ok((latencies, started.elapsed()))
}

/// Waits until `target` answers 2xx (up to `within`): how long that took.
pub async fn first_answer(target: &Target, within: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let attempt = async {
            let mut connection = Connection::open(target).await?;
            connection.send().await
        };
        match attempt.await {
            Ok(_) => return Ok(started.elapsed()),
            Err(err) if started.elapsed() > within => {
                return Err(err.context(format!("no answer within {within:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}
