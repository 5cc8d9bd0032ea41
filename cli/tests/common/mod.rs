//! Driving the `hookline` binary: each test file uses part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The server, and the request its ready-made curl command makes.
pub struct Served {
    pub child: Child,
    pub addr: String,
    pub path: String,
    pub token: String,
    pub body: String,
    /// With --create-queue: the job queue's and the dead-letter queue's URLs.
    pub queues: Option<(String, String)>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn serve(extra: &[&str]) -> Served {
    serve_with(extra, &[])
}

pub fn serve_with(extra: &[&str], env: &[(&str, &str)]) -> Served {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["serve", "--addr", &addr])
        .args(extra)
        .env("HOOKLINE_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hookline serve");
    let (mut path, mut token, mut body, mut queues) = (None, None, None, None);
    let unquote = |s: &str| s.trim_end_matches([' ', '\\']).trim_end_matches('\'').to_string();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Queue ") {
            let (queue, dlq) = rest.split_once(" (dead letters: ").expect("queue line");
            queues = Some((queue.to_string(), dlq.trim_end_matches(')').to_string()));
        } else if let Some(url) = line.strip_prefix("curl -s http://") {
            path = url.split_once('/').map(|(_, p)| format!("/{}", unquote(p)));
        } else if let Some(rest) = line.strip_prefix("-H 'Authorization: bearer ") {
            token = Some(unquote(rest));
        } else if let Some(rest) = line.strip_prefix("-d '") {
            body = Some(unquote(rest));
            break;
        }
    }
    let printed = |part: Option<String>| part.expect("serve prints a complete curl command");
    Served { child, addr, path: printed(path), token: printed(token), body: printed(body), queues }
}

pub fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}
/// A request without a body; returns the status line, the headers (lower
/// case) and the body.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let headers: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

/// One HTTP/1.1 exchange; returns the status line, the headers and the body.
pub fn post(addr: &str, path: &str, token: &str, body: &str) -> (String, String, String) {
    post_with(addr, path, &[("Authorization", &format!("bearer {token}"))], body)
}

/// A JSON POST with these headers besides; answers as [`post`].
pub fn post_with(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let headers: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

/// One whole HTTP/1.1 request with a Content-Length, as text.
pub fn read_request(stream: &mut TcpStream) -> String {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        request.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                .and_then(|l| l.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length || n == 0 {
                return text;
            }
        }
    }
}
