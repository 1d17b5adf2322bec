//! A scripted HTTP/1.1 server on loopback for the sink tests: it records every request (headers and
//! body) and answers each by a script: a status with headers, a dropped connection, or silence.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the server does with request number `n` (counted from 0 over the server's life).
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with this status and extra header lines (`Name: value`).
    Status(u16, Vec<String>),
    /// Answer with this status and a JSON body.
    Json(u16, String),
    /// Close the connection without answering.
    Drop,
    /// Never answer (until the client gives up or dies).
    Hang,
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request line, e.g. `POST /hook HTTP/1.1`.
    pub line: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// What the server answered (the status, 0 for dropped or unanswered).
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// Was it acknowledged (2xx)?
    pub fn acknowledged(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

/// The server; its threads end with the test process.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl TestServer {
    /// Starts a server answering by `script` (given the request's number).
    pub fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(move |n, _| script(n))
    }

    /// Starts a server answering by `script`, given the request's number and the request.
    pub fn start_with(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                std::thread::spawn(move || serve(stream, &log, script.as_ref()));
            }
        });
        Self { url, received }
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Received>>, script: &Script) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = {
            let mut log = log.lock().expect("log");
            let mut received = Received {
                line: line.trim_end().to_string(),
                headers,
                body,
                status: 0,
                at: Instant::now(),
            };
            let reply = script(log.len(), &received);
            received.status = match &reply {
                Reply::Status(status, _) | Reply::Json(status, _) => *status,
                _ => 0,
            };
            log.push(received);
            reply
        };
        match reply {
            Reply::Status(status, extra) => {
                let mut response = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n");
                for header in extra {
                    response.push_str(&header);
                    response.push_str("\r\n");
                }
                response.push_str("\r\n");
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
            Reply::Json(status, body) => {
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
            Reply::Drop => return,
            Reply::Hang => {
                std::thread::sleep(std::time::Duration::from_secs(600));
                return;
            }
        }
    }
}
